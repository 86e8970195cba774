// Plugins: aggregators, server optimizers, compressors, topologies, samplers, messages.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "aggregators/aggregator.h"
#include "aggregators/server_optimizer.h"
#include "compressors/compressor.h"
#include "core/error.h"
#include "nodes/message.h"
#include "nodes/sampling.h"
#include "topologies/topology.h"

namespace starling {
namespace {

// Builds plugin `kind` of `registry` from the YAML mapping `params`, as config/ does.
template <typename R, typename... Extra>
auto make(const R& registry, const std::string& key, const std::string& kind, const std::string& params = "{}",
          Extra... extra) {
  Section root(YAML::Load(key + ": " + params));
  Section s = root.child(key);
  return registry.create(kind, s.path("kind"), s, extra...);
}

bool same_bits(const Vector& a, const Vector& b) {
  if (a.size() != b.size()) return false;
  if (a.size() == 0) return true;  // data() may be null: memcmp(nullptr, ...) is undefined
  return std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0;
}

Vector random_vector(Eigen::Index d, std::uint64_t seed) {
  Rng rng(seed, 0, Purpose::kTest);
  Vector v(d);
  for (Eigen::Index i = 0; i < d; ++i) v[i] = static_cast<float>(rng.normal());
  return v;
}

// ---------------------------------------------------------------- Mean aggregator

TEST(MeanAggregator, WeightedMeanIsExactOnSmallInputs) {
  auto mean = make(aggregator_registry(), "aggregator", "mean");
  Vector a(4), b(4);
  a << 1, 2, 3, 4;
  b << 3, 6, 9, 12;
  const std::vector<Contribution> c = {{1, 1.0, &a}, {2, 3.0, &b}};
  const Vector out = mean->combine(c);
  Vector expected(4);
  expected << 2.5f, 5.0f, 7.5f, 10.0f;  // (1 * a + 3 * b) / 4, exact in float
  EXPECT_TRUE(out == expected) << out.transpose();

  Vector x(2), y(2), z(2);
  x << 1, -1;
  y << 2, 0;
  z << 5, 1;
  const std::vector<Contribution> equal = {{4, 2.0, &x}, {7, 2.0, &y}, {9, 4.0, &z}};
  const Vector m = mean->combine(equal);
  EXPECT_FLOAT_EQ(m[0], (2 * 1 + 2 * 2 + 4 * 5) / 8.0f);
  EXPECT_FLOAT_EQ(m[1], (2 * -1 + 0 + 4 * 1) / 8.0f);
  // A single contribution is returned as is, whatever its weight.
  const std::vector<Contribution> one = {{3, 17.0, &a}};
  EXPECT_TRUE(mean->combine(one) == a);
}

TEST(MeanAggregator, ResultDoesNotDependOnContributionOrder) {
  auto mean = make(aggregator_registry(), "aggregator", "mean");
  std::vector<Vector> vectors;
  for (int i = 0; i < 9; ++i) vectors.push_back(random_vector(1000, 100 + i));
  std::vector<Contribution> c;
  for (int i = 0; i < 9; ++i) c.push_back({static_cast<NodeId>(i * 3 + 1), 10.0 + 7 * i, &vectors[static_cast<std::size_t>(i)]});
  const Vector reference = mean->combine(c);
  Rng rng(1, 0, Purpose::kTest);
  for (int trial = 0; trial < 10; ++trial) {
    rng.shuffle(std::span(c));
    EXPECT_TRUE(same_bits(mean->combine(c), reference)) << "permutation " << trial;
  }
  std::reverse(c.begin(), c.end());
  EXPECT_TRUE(same_bits(mean->combine(c), reference));
}

TEST(MeanAggregator, IdenticalBitsForOneAndFourThreads) {
  constexpr Eigen::Index kDim = 100000;
  std::vector<Vector> vectors;
  for (int i = 0; i < 10; ++i) vectors.push_back(random_vector(kDim, 200 + i));
  std::vector<Contribution> c;
  for (int i = 0; i < 10; ++i) c.push_back({static_cast<NodeId>(10 - i), 1.0 + i * i, &vectors[static_cast<std::size_t>(i)]});
  auto mean = make(aggregator_registry(), "aggregator", "mean");
  Vector one, four;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = mean->combine(c);
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 4);
    four = mean->combine(c);
  }
  EXPECT_TRUE(same_bits(one, four));
  // And it is the weighted mean.
  double total = 0.0;
  for (const auto& x : c) total += x.weight;
  for (Eigen::Index i : {Eigen::Index{0}, Eigen::Index{16383}, Eigen::Index{16384}, Eigen::Index{77777}, kDim - 1}) {
    double expected = 0.0;
    for (const auto& x : c) expected += x.weight / total * (*x.vector)[i];
    EXPECT_NEAR(one[i], expected, 1e-5) << "coordinate " << i;
  }
}

TEST(MeanAggregator, RejectsBadInput) {
  auto mean = make(aggregator_registry(), "aggregator", "mean");
  EXPECT_THROW(mean->combine({}), Error);
  Vector a = Vector::Ones(3), b = Vector::Ones(4);
  const std::vector<Contribution> sizes = {{1, 1.0, &a}, {2, 1.0, &b}};
  EXPECT_THROW(mean->combine(sizes), Error);
  const std::vector<Contribution> zero = {{1, 0.0, &a}};
  EXPECT_THROW(mean->combine(zero), Error);
}

TEST(MeanAggregator, SortedBySenderKeepsTies) {
  Vector a, b, c;
  const std::vector<Contribution> in = {{5, 1.0, &a}, {2, 2.0, &b}, {5, 3.0, &c}};
  const auto out = sorted_by_sender(in);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].sender, 2);
  EXPECT_EQ(out[1].vector, &a);
  EXPECT_EQ(out[2].vector, &c);
}

TEST(AggregatorRegistry, UnknownKindListsKnownNames) {
  try {
    make(aggregator_registry(), "aggregator", "meen");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "aggregator.kind");
    EXPECT_NE(std::string(e.what()).find("aggregator.kind: \"meen\" is unknown aggregator; known: centered_clip, flag, geometric_median, krum, majority_vote, mean, median, multi_krum, nna, trimmed_mean"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(aggregator_registry().add("mean", "again", [](Section&) -> std::unique_ptr<Aggregator> { return nullptr; }),
               std::logic_error);
}

// ---------------------------------------------------------------- Server optimizer

TEST(ServerSgd, AppliesScaledUpdate) {
  auto opt = make(server_optimizer_registry(), "server_optimizer", "sgd", "{lr: 0.5}");
  Vector model(3), update(3);
  model << 1, 2, 3;
  update << 2, -4, 0;
  opt->apply(model, update);
  EXPECT_TRUE(model == Vector((Vector(3) << 2, 0, 3).finished()));
  auto plain = make(server_optimizer_registry(), "server_optimizer", "sgd");
  plain->apply(model, update);
  EXPECT_TRUE(model == Vector((Vector(3) << 4, -4, 3).finished()));
  EXPECT_THROW(make(server_optimizer_registry(), "server_optimizer", "sgd", "{lr: 0}"), ConfigError);
}

// ---------------------------------------------------------------- Compressor "none"

TEST(NoCompression, RoundTripIsExactAndSizeIsFourBytesPerCoordinate) {
  auto none = make(compressor_registry(), "compressor", "none", "{}", std::span<const TensorShape>{});
  Rng rng(1, 0, Purpose::kCompression);
  for (Eigen::Index d : {Eigen::Index{0}, Eigen::Index{1}, Eigen::Index{7}, Eigen::Index{7850}}) {
    Vector v = random_vector(d, static_cast<std::uint64_t>(d));
    if (d >= 7) {  // values a lossy or sloppy encoding would damage
      v[0] = -0.0f;
      v[1] = std::numeric_limits<float>::denorm_min();
      v[2] = std::numeric_limits<float>::infinity();
      v[3] = std::numeric_limits<float>::max();
      v[4] = 1e-30f;
      v[5] = std::numeric_limits<float>::quiet_NaN();
    }
    const Payload p = none->encode(v, rng);
    EXPECT_EQ(p.size(), static_cast<std::size_t>(4 * d));
    EXPECT_TRUE(same_bits(none->decode(p, d), v)) << "d = " << d;
  }
  EXPECT_EQ(rng.position(), 0u);  // "none" draws no randomness
}

TEST(NoCompression, DecodeOfWrongSizeThrows) {
  auto none = make(compressor_registry(), "compressor", "none", "{}", std::span<const TensorShape>{});
  Rng rng(1, 0, Purpose::kCompression);
  const Payload p = none->encode(random_vector(10, 3), rng);
  EXPECT_THROW(none->decode(p, 11), Error);
  EXPECT_THROW(none->decode(p, 9), Error);
  Payload odd = p;
  odd.pop_back();
  EXPECT_THROW(none->decode(odd, 10), Error);
  EXPECT_THROW(none->decode({}, 1), Error);
  auto copy = none->clone();
  EXPECT_TRUE(same_bits(copy->decode(p, 10), random_vector(10, 3)));
}

TEST(NoCompression, WireFormatIsLittleEndianFloat32) {
  Vector v(2);
  v << 1.0f, -2.0f;
  const Payload p = encode_fp32(v);
  ASSERT_EQ(p.size(), 8u);
  EXPECT_EQ(p, (Payload{0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}));
}

// ---------------------------------------------------------------- Topologies, samplers, messages

TEST(Topology, StarAndComplete) {
  const Graph star = make(topology_registry(), "topology", "star")->build(5);
  ASSERT_EQ(star.size(), 5);
  EXPECT_EQ(star.neighbours[0], (std::vector<NodeId>{1, 2, 3, 4}));
  for (NodeId i = 1; i < 5; ++i) EXPECT_EQ(star.neighbours[static_cast<std::size_t>(i)], std::vector<NodeId>{0});
  EXPECT_EQ(star.num_edges(), 4);
  const Graph complete = make(topology_registry(), "topology", "complete")->build(6);
  EXPECT_EQ(complete.num_edges(), 15);
  for (NodeId i = 0; i < 6; ++i) {
    const auto& n = complete.neighbours[static_cast<std::size_t>(i)];
    EXPECT_EQ(n.size(), 5u);
    EXPECT_TRUE(std::is_sorted(n.begin(), n.end()));
    EXPECT_EQ(std::count(n.begin(), n.end(), i), 0);
  }
}

// A pool of `n` clients with the given sizes (default: all 10) and losses (default: none reported).
struct TestPool {
  std::vector<std::int64_t> sizes;
  std::vector<double> losses;
  ClientPool pool(int round = 1) {
    return ClientPool{round, static_cast<int>(sizes.size()), &sizes, &losses, {}};
  }
  explicit TestPool(int n) : sizes(static_cast<std::size_t>(n), 10), losses(static_cast<std::size_t>(n), std::nan("")) {}
};

TEST(UniformSampler, PicksFractionOfDistinctSortedClients) {
  auto sampler = make(sampler_registry(), "sampling", "uniform", "{fraction: 0.5}");
  Rng rng(1, 0, Purpose::kSampling);
  TestPool p(20);
  std::vector<int> picked(20, 0);
  ASSERT_EQ(sampler->per_round(20), 10);
  for (int round = 1; round <= 200; ++round) {
    const auto s = sampler->sample(p.pool(round), 10, rng);
    ASSERT_EQ(s.size(), 10u);
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    EXPECT_EQ(std::set<int>(s.begin(), s.end()).size(), 10u);
    for (int c : s) {
      ASSERT_GE(c, 0);
      ASSERT_LT(c, 20);
      ++picked[static_cast<std::size_t>(c)];
    }
  }
  for (int x : picked) EXPECT_NEAR(x, 100, 30);
  auto tiny = make(sampler_registry(), "sampling", "uniform", "{fraction: 0.001}");
  EXPECT_EQ(tiny->per_round(20), 1);  // at least one client
  Rng a(5, 0, Purpose::kSampling), b(5, 0, Purpose::kSampling);
  EXPECT_EQ(sampler->sample(p.pool(), 10, a), sampler->sample(p.pool(), 10, b));
  EXPECT_THROW(make(sampler_registry(), "sampling", "uniform", "{fraction: 0}"), ConfigError);
  EXPECT_THROW(make(sampler_registry(), "sampling", "uniform", "{fraction: 1.5}"), ConfigError);
}

TEST(WeightedSampler, DrawsInProportionToDataSize) {
  auto sampler = make(sampler_registry(), "sampling", "weighted", "{fraction: 0.01}");
  TestPool p(6);
  p.sizes = {10, 20, 30, 40, 50, 150};  // total 300
  Rng rng(3, 0, Purpose::kSampling);
  std::vector<int> count(6, 0);
  const int draws = 30000;
  for (int r = 0; r < draws; ++r) {
    const auto s = sampler->sample(p.pool(), 1, rng);
    ASSERT_EQ(s.size(), 1u);
    ++count[static_cast<std::size_t>(s[0])];
  }
  for (std::size_t c = 0; c < 6; ++c) {
    const double q = static_cast<double>(p.sizes[c]) / 300.0;
    EXPECT_NEAR(count[c], draws * q, 5.0 * std::sqrt(draws * q * (1 - q))) << "client " << c;
  }
  const auto several = sampler->sample(p.pool(), 4, rng);  // distinct, ascending
  EXPECT_EQ(std::set<int>(several.begin(), several.end()).size(), 4u);
  EXPECT_TRUE(std::is_sorted(several.begin(), several.end()));
}

TEST(RoundRobinSampler, CoversEveryClientOncePerCycle) {
  auto sampler = make(sampler_registry(), "sampling", "round_robin", "{fraction: 0.25}");
  TestPool p(12);
  Rng rng(4, 0, Purpose::kSampling);
  for (int cycle = 0; cycle < 5; ++cycle) {
    std::vector<int> seen(12, 0);
    for (int r = 0; r < 4; ++r)
      for (int c : sampler->sample(p.pool(), 3, rng)) ++seen[static_cast<std::size_t>(c)];
    EXPECT_EQ(seen, std::vector<int>(12, 1)) << "cycle " << cycle;
  }
  // A count that does not divide the clients wraps around: 5 rounds of 4 of 10 = each twice.
  auto other = make(sampler_registry(), "sampling", "round_robin", "{fraction: 0.4}");
  TestPool q(10);
  std::vector<int> seen(10, 0);
  for (int r = 0; r < 5; ++r)
    for (int c : other->sample(q.pool(), 4, rng)) ++seen[static_cast<std::size_t>(c)];
  EXPECT_EQ(seen, std::vector<int>(10, 2));
}

TEST(PowerOfChoiceSampler, PicksHighestLossCandidates) {
  TestPool p(20);
  for (int c = 0; c < 20; ++c) p.losses[static_cast<std::size_t>(c)] = (c * 7) % 20;  // a permutation of 0..19
  p.sizes[3] = 50;
  // d = all clients: exactly the K highest losses.
  auto all = make(sampler_registry(), "sampling", "power_of_choice", "{fraction: 0.2, candidates: 20}");
  Rng rng(6, 0, Purpose::kSampling);
  std::vector<int> top;
  for (int c = 0; c < 20; ++c)
    if (p.losses[static_cast<std::size_t>(c)] >= 16) top.push_back(c);
  EXPECT_EQ(all->sample(p.pool(), 4, rng), top);
  // Clients never heard from come first.
  p.losses[5] = std::nan("");
  const auto with_unknown = all->sample(p.pool(), 4, rng);
  EXPECT_TRUE(std::count(with_unknown.begin(), with_unknown.end(), 5));
  p.losses[5] = 0.0;
  // d < clients: the K highest-loss ones among the size-weighted candidates (replayed).
  auto some = make(sampler_registry(), "sampling", "power_of_choice", "{fraction: 0.2, candidates: 8}");
  for (int trial = 0; trial < 50; ++trial) {
    Rng replay = rng;
    std::vector<double> w(p.sizes.begin(), p.sizes.end());
    auto candidates = weighted_without_replacement(w, 8, replay);
    std::sort(candidates.begin(), candidates.end(), [&](int a, int b) {
      return p.losses[static_cast<std::size_t>(a)] > p.losses[static_cast<std::size_t>(b)];
    });
    candidates.resize(4);
    std::sort(candidates.begin(), candidates.end());
    EXPECT_EQ(some->sample(p.pool(), 4, rng), candidates);
  }
}

TEST(AvailableSampler, PicksOnlyOnlineClients) {
  auto sampler = make(sampler_registry(), "sampling", "available", "{fraction: 0.5}");
  TestPool p(20);
  Rng rng(7, 0, Purpose::kSampling);
  auto pool = p.pool();
  pool.online = [](int c) { return c % 3 == 0; };  // 0, 3, ..., 18: 7 online
  for (int r = 0; r < 20; ++r) {
    const auto s = sampler->sample(pool, 5, rng);
    ASSERT_EQ(s.size(), 5u);
    for (int c : s) EXPECT_EQ(c % 3, 0);
  }
  EXPECT_EQ(sampler->sample(pool, 10, rng), (std::vector<int>{0, 3, 6, 9, 12, 15, 18}));  // all of them
}

TEST(CurriculumSampler, SamplesAmongTheEasiestWithAGrowingPool) {
  auto sampler = make(sampler_registry(), "sampling", "curriculum", "{fraction: 0.1, start: 0.25, ramp_rounds: 10}");
  TestPool p(40);
  for (int c = 0; c < 40; ++c) p.losses[static_cast<std::size_t>(c)] = 40 - c;  // client 39 is the easiest
  Rng rng(8, 0, Purpose::kSampling);
  std::set<int> seen_late;
  for (int round = 1; round <= 30; ++round) {
    // Pool: the ceil(40 * min(1, 0.25 + 0.75 (r - 1) / 10)) lowest losses = clients 40 - size .. 39.
    const int size = static_cast<int>(std::ceil(40 * std::min(1.0, 0.25 + 0.75 * (round - 1) / 10.0) - 1e-9));
    for (int rep = 0; rep < 5; ++rep)
      for (int c : sampler->sample(p.pool(round), 4, rng)) {
        EXPECT_GE(c, 40 - size) << "round " << round;
        if (round > 11) seen_late.insert(c);
      }
  }
  EXPECT_GT(seen_late.size(), 30u);  // the full population once the ramp is over
  EXPECT_THROW(make(sampler_registry(), "sampling", "curriculum", "{start: 0}"), ConfigError);
}

TEST(Message, WireBytesAreHeaderPlusPayload) {
  Message m;
  EXPECT_EQ(Message::kHeaderBytes, 32);
  EXPECT_EQ(m.wire_bytes(), 32);
  m.set_payload(Payload(4 * 7850));
  EXPECT_EQ(m.wire_bytes(), 32 + 4 * 7850);
  EXPECT_STREQ(to_string(MessageKind::kModel), "model");
  EXPECT_STREQ(to_string(MessageKind::kUpdate), "update");
}

}  // namespace
}  // namespace starling
