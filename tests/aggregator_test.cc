// Aggregators: a conformance suite over every registered rule, robustness against a Byzantine
// minority, and the server optimizers' update formulas.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <cstring>

#include "aggregators/aggregator.h"
#include "aggregators/server_optimizer.h"
#include "core/rng.h"
#include "test_util.h"

namespace starling {
namespace {

template <typename R>
auto make(const R& registry, const std::string& yaml) {
  return test::from_section(yaml, [&](Section& s) { return registry.create(s.get<std::string>("kind", ""), s.path("kind"), s); });
}

Vector random_vector(std::int64_t d, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed, 0, Purpose::kTest);
  Vector v(d);
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

std::vector<Contribution> view(const std::vector<Vector>& vs) {
  std::vector<Contribution> out;
  for (std::size_t i = 0; i < vs.size(); ++i) out.push_back({static_cast<NodeId>(i), 1.0, &vs[i]});
  return out;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, IdentityOrderInvarianceThreadsAndEmptyInput) {
  const std::string yaml = "{kind: " + GetParam() + (GetParam().find("krum") != std::string::npos ? ", f: 1}" : "}");
  // Identical inputs give that input back (for the sign vote: identical sign messages).
  Vector input = random_vector(300, 1);
  if (GetParam() == "majority_vote") input = 0.3f * input.array().sign().matrix();
  std::vector<Vector> same(6, input);
  const Vector back = make(aggregator_registry(), yaml)->combine(view(same));
  EXPECT_LT((back - same[0]).norm(), 1e-4 * same[0].norm()) << GetParam();
  // Arrival order does not matter, nor does the thread count (identical bits).
  std::vector<Vector> xs;
  for (int i = 0; i < 7; ++i) xs.push_back(random_vector(20000, 10 + static_cast<std::uint64_t>(i)));
  auto forward = view(xs), backward = forward;
  std::reverse(backward.begin(), backward.end());
  Vector one, four;
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 1);
    one = make(aggregator_registry(), yaml)->combine(forward);
  }
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 4);
    four = make(aggregator_registry(), yaml)->combine(backward);
  }
  ASSERT_EQ(one.size(), four.size());
  EXPECT_EQ(std::memcmp(one.data(), four.data(), sizeof(float) * static_cast<std::size_t>(one.size())), 0) << GetParam();
  EXPECT_THROW(make(aggregator_registry(), yaml)->combine({}), Error) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, Conformance, ::testing::ValuesIn(aggregator_registry().names()));

TEST(RobustAggregators, ResistAByzantineMinority) {
  // 7 honest updates around `truth`, 3 attackers sending a huge vector: the mean is dragged far
  // away; every robust rule stays within the honest spread.
  const std::int64_t d = 50;
  const Vector truth = random_vector(d, 3);
  std::vector<Vector> xs;
  for (int i = 0; i < 7; ++i) xs.push_back(truth + random_vector(d, 100 + static_cast<std::uint64_t>(i), 0.1));
  for (int i = 0; i < 3; ++i) xs.push_back(Vector::Constant(d, 1000.0f));
  const double honest_spread = 0.1 * std::sqrt(static_cast<double>(d));  // ~ norm of one honest noise vector
  EXPECT_GT((make(aggregator_registry(), "{kind: mean}")->combine(view(xs)) - truth).norm(), 100.0);
  for (const std::string yaml : {"{kind: median}", "{kind: trimmed_mean, f: 3}", "{kind: krum, f: 3}",
                                 "{kind: multi_krum, f: 3}", "{kind: geometric_median}"}) {
    const double error = (make(aggregator_registry(), yaml)->combine(view(xs)) - truth).norm();
    EXPECT_LT(error, 2.0 * honest_spread) << yaml;
  }
  // Centered clipping bounds how far the attackers can pull, per iteration, by tau * f / n.
  auto cc = make(aggregator_registry(), "{kind: centered_clip, tau: 0.5, iterations: 50}");
  const Vector first = cc->combine(view(xs));
  EXPECT_LT((first - truth).norm(), 0.5 * 3.0 / 10.0 * 50 + 2.0 * honest_spread + truth.norm());
  const Vector second = cc->combine(view(xs));  // starts from the previous result: closer still
  EXPECT_LT((second - truth).norm(), (first - truth).norm() + 1e-6);
}

TEST(RobustAggregators, MajorityVoteTakesTheSignMostAgreeOn) {
  // Per coordinate: 3 positive vs 2 negative -> +; 2 vs 3 -> -; a 2-2 tie (one zero) -> 0.
  std::vector<Vector> xs(5, Vector(3));
  const float votes[5][3] = {{1, -1, 1}, {1, -1, -1}, {1, 1, 1}, {-1, 1, -1}, {-1, -1, 0}};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) xs[static_cast<std::size_t>(i)][j] = 2.0f * votes[i][j];
  const Vector out = make(aggregator_registry(), "{kind: majority_vote}")->combine(view(xs));
  const float magnitude = (2.0f * 3 * 4 + 2.0f * 2) / 3.0f / 5.0f;  // mean over senders of mean |v_i|
  EXPECT_FLOAT_EQ(out[0], magnitude);
  EXPECT_FLOAT_EQ(out[1], -magnitude);
  EXPECT_EQ(out[2], 0.0f);
}

TEST(RobustAggregators, KrumPicksAnHonestContributionAndTrimmingMustLeaveSomething) {
  std::vector<Vector> xs = {Vector::Constant(4, 1.0f), Vector::Constant(4, 1.1f), Vector::Constant(4, 0.9f),
                            Vector::Constant(4, 50.0f)};
  const Vector k = make(aggregator_registry(), "{kind: krum, f: 1}")->combine(view(xs));
  EXPECT_EQ(k, Vector::Constant(4, 1.0f));  // the centre of the honest three
  EXPECT_THROW(make(aggregator_registry(), "{kind: trimmed_mean, f: 2}")->combine(view(xs)), Error);
  EXPECT_THROW(make(aggregator_registry(), "{kind: krum, f: 2}")->combine(view(xs)), Error);  // n <= f + 2
  std::vector<Vector> even = {Vector::Constant(1, 1.0f), Vector::Constant(1, 2.0f), Vector::Constant(1, 4.0f),
                              Vector::Constant(1, 10.0f)};
  EXPECT_EQ(make(aggregator_registry(), "{kind: median}")->combine(view(even))[0], 3.0f);
}

TEST(RobustAggregators, NnaAveragesTheNearestWithTiesByLowerSender) {
  // 1-D: {0, 1, -1}, f = 1 -> each point averages itself and its nearest: 0 is as close to 1 as
  // to -1, and takes sender 1 (the lower): {0.5, 0.5, -0.5}.
  std::vector<Vector> xs = {Vector::Constant(1, 0.0f), Vector::Constant(1, 1.0f), Vector::Constant(1, -1.0f)};
  EXPECT_FLOAT_EQ(make(aggregator_registry(), "{kind: nna, f: 1}")->combine(view(xs))[0], 0.5f / 3.0f);
  // {0, 1, 2, 100}, f = 1: the honest three mix to 1, the outlier to 103 / 3; the inner median
  // then returns 1.
  std::vector<Vector> ys = {Vector::Constant(1, 0.0f), Vector::Constant(1, 1.0f), Vector::Constant(1, 2.0f),
                            Vector::Constant(1, 100.0f)};
  EXPECT_FLOAT_EQ(make(aggregator_registry(), "{kind: nna, f: 1, inner: {kind: median}}")->combine(view(ys))[0], 1.0f);
  EXPECT_FLOAT_EQ(make(aggregator_registry(), "{kind: nna, f: 1}")->combine(view(ys))[0], (3.0f + 103.0f / 3.0f) / 4.0f);
  EXPECT_THROW(make(aggregator_registry(), "{kind: nna, f: 4}")->combine(view(ys)), Error);
  EXPECT_THROW(make(aggregator_registry(), "{kind: nna, inner: {kind: meen}}"), ConfigError);
  EXPECT_THROW(make(aggregator_registry(), "{kind: nna, inner: {kind: mean, f: 2}}"), ConfigError);  // unknown key
}

TEST(RobustAggregators, NnaShrinksTheAttackersPull) {
  // f = 3 of 10 attackers sit together a few honest spreads away. Every honest point's n - f
  // nearest are the honest ones, so only the attackers' own mixed vectors carry them, diluted by
  // the n - 2f honest neighbours they pick up: the pull f/n * offset of the mean shrinks by
  // f / (n - f) = 3/7 (plus honest noise). nna + mean stays within the honest spread, plain mean not.
  const std::int64_t d = 50;
  const Vector truth = random_vector(d, 3);
  const double honest_spread = 0.1 * std::sqrt(static_cast<double>(d));
  Vector offset = random_vector(d, 4);
  offset *= static_cast<float>(4.0 * honest_spread / offset.norm());
  std::vector<Vector> xs;
  for (int i = 0; i < 7; ++i) xs.push_back(truth + random_vector(d, 100 + static_cast<std::uint64_t>(i), 0.1));
  for (int i = 0; i < 3; ++i) xs.push_back(truth + offset + random_vector(d, 200 + static_cast<std::uint64_t>(i), 0.01));
  const double plain = (make(aggregator_registry(), "{kind: mean}")->combine(view(xs)) - truth).norm();
  const double mixed = (make(aggregator_registry(), "{kind: nna, f: 3}")->combine(view(xs)) - truth).norm();
  EXPECT_GT(plain, honest_spread);
  EXPECT_LT(mixed, honest_spread);
  EXPECT_LT(mixed, 0.6 * plain);
  // Far-away attackers still drag nna + mean (their mixed vectors stay far); a robust inner rule
  // is what bounds them.
  for (int i = 7; i < 10; ++i) xs[static_cast<std::size_t>(i)] = Vector::Constant(d, 1000.0f);
  EXPECT_GT((make(aggregator_registry(), "{kind: nna, f: 3}")->combine(view(xs)) - truth).norm(), 100.0);
  const auto robust = make(aggregator_registry(), "{kind: nna, f: 3, inner: {kind: trimmed_mean, f: 3}}");
  EXPECT_LT((robust->combine(view(xs)) - truth).norm(), 2.0 * honest_spread);
}

TEST(RobustAggregators, FlagFollowsTheMajorityDirection) {
  // 7 honest updates around `truth`, 3 attackers pointing elsewhere with 100x the length: the
  // normalization takes their length away and the flag median follows the honest majority.
  const std::int64_t d = 50;
  const Vector truth = random_vector(d, 3);
  std::vector<Vector> xs;
  for (int i = 0; i < 7; ++i) xs.push_back(truth + random_vector(d, 100 + static_cast<std::uint64_t>(i), 0.1));
  for (int i = 0; i < 3; ++i) xs.push_back(100.0f * random_vector(d, 9));
  const Vector out = make(aggregator_registry(), "{kind: flag}")->combine(view(xs));
  EXPECT_GT(out.dot(truth) / (out.norm() * truth.norm()), 0.95);
  // Rescaled by median |g_i| / n: the 7 honest projections have length ~1, the 3 others ~0.
  EXPECT_NEAR(out.norm(), 0.7 * truth.norm(), 0.15 * truth.norm());
  // The card's own scale: a sum of n unit-length projections (identical inputs: n x the unit vector).
  std::vector<Vector> same(5, truth);
  const Vector raw = make(aggregator_registry(), "{kind: flag, rescale: false}")->combine(view(same));
  EXPECT_NEAR(raw.norm(), 5.0, 1e-4);
  EXPECT_GT(raw.dot(truth) / truth.norm(), 5.0 - 1e-4);
}

TEST(ServerOptimizers, UpdateFormulas) {
  const Vector u1 = Vector::Constant(2, 0.5f), u2 = Vector::Constant(2, -0.25f);
  Vector x = Vector::Zero(2);
  auto momentum = make(server_optimizer_registry(), "{kind: momentum, lr: 1.0, beta: 0.9}");
  momentum->apply(x, u1);
  momentum->apply(x, u2);
  EXPECT_NEAR(x[0], 0.5 + (0.9 * 0.5 - 0.25), 1e-6);
  // FedAdam's first step: m = 0.1 u, v = 0.01 u^2 -> lr * 0.1 u / (0.1 |u| + tau).
  Vector y = Vector::Zero(2);
  make(server_optimizer_registry(), "{kind: adam, lr: 0.1, tau: 0.001}")->apply(y, u1);
  EXPECT_NEAR(y[0], 0.1 * 0.05 / (0.05 + 0.001), 1e-6);
  // FedAdagrad: v accumulates u^2.
  Vector z = Vector::Zero(2);
  auto adagrad = make(server_optimizer_registry(), "{kind: adagrad, lr: 1.0, beta1: 0, tau: 0.001}");
  adagrad->apply(z, u1);
  EXPECT_NEAR(z[0], 0.5 / (0.5 + 0.001), 1e-6);
  // FedYogi: v <- v - (1 - b2) u^2 sign(v - u^2); from v = 0 it grows by (1 - b2) u^2.
  Vector w = Vector::Zero(2);
  make(server_optimizer_registry(), "{kind: yogi, lr: 1.0, beta1: 0, beta2: 0.99, tau: 0.001}")->apply(w, u1);
  EXPECT_NEAR(w[0], 0.5 / (std::sqrt(0.01 * 0.25) + 0.001), 1e-5);
  EXPECT_THROW(make(server_optimizer_registry(), "{kind: adam, beta1: 2}"), ConfigError);
}

}  // namespace
}  // namespace starling
