// Conformance suite over every registered compressor, plus each operator's own properties.
#include <gtest/gtest.h>

#include <Eigen/SVD>

#include <cmath>
#include <set>
#include <numeric>

#include "compressors/compressor.h"
#include "test_util.h"

namespace starling {
namespace {

std::unique_ptr<Compressor> make(const std::string& yaml, std::span<const TensorShape> tensors = {}) {
  return test::from_section(yaml, [&](Section& s) { return make_compressor(s, tensors); });
}

Vector random_vector(std::int64_t d, std::uint64_t seed) {
  Rng rng(seed, 0, Purpose::kTest);
  Vector v(d);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// A model-like layout of d values: one near-square matrix, the rest a bias vector.
std::vector<TensorShape> layout_for(std::int64_t d) {
  const auto rows = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::sqrt(static_cast<double>(d))));
  const std::int64_t cols = d / rows, rest = d - rows * cols;
  std::vector<TensorShape> tensors{{0, rows * cols, rows, cols}};
  if (rest > 0) tensors.push_back({rows * cols, rest, rest, 1});
  return tensors;
}

double sq(const Vector& v) { return static_cast<double>(v.squaredNorm()); }

// The average of `draws` round trips of v: tends to v for an unbiased operator.
Vector mean_of_draws(Compressor& c, const Vector& v, Rng& rng, int draws) {
  Vector mean = Vector::Zero(v.size());
  for (int t = 0; t < draws; ++t) mean += c.decode(c.encode(v, rng), v.size()) / static_cast<float>(draws);
  return mean;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, RoundTripShapeZeroesAndBadInput) {
  const auto maker = [&](std::int64_t d) { return make("{kind: " + GetParam() + "}", layout_for(d)); };
  Rng rng(1, 0, Purpose::kCompression);
  for (std::int64_t d : {1, 7, 1000, 4099}) {
    auto c = maker(d);
    const Vector v = random_vector(d, static_cast<std::uint64_t>(d));
    const Payload p = c->encode(v, rng);
    const Vector back = c->decode(p, d);
    ASSERT_EQ(back.size(), d);
    // Decoding into a reused buffer overwrites every entry (stale values must not leak through).
    Vector reused = Vector::Constant(d, 12345.0f);
    const float* storage = reused.data();
    c->decode_into(p, d, reused);
    EXPECT_EQ(reused, back) << GetParam() << " d=" << d;
    const std::set<std::string> in_place = {"none", "fp16", "bf16", "topk", "randk", "qsgd", "sign"};
    if (in_place.count(GetParam())) {
      EXPECT_EQ(reused.data(), storage) << GetParam() << ": the buffer is reused";
    }
    EXPECT_TRUE(back.allFinite());
    // Every operator keeps the vector's scale: the error is at most the vector itself (+ for unbiased ones, more).
    EXPECT_LT(sq(back - v), 200.0 * sq(v) + 1e-9) << GetParam() << " d=" << d;
    // Decoding garbage is an error, not a crash: truncate the payload by one byte.
    if (!p.empty()) {
      Payload cut(p.begin(), p.end() - 1);
      EXPECT_THROW(c->decode(cut, d), Error) << GetParam();
    }
  }
  const Vector zero = Vector::Zero(64);
  EXPECT_EQ(maker(64)->decode(maker(64)->encode(zero, rng), 64), zero) << GetParam();
  Vector bad = random_vector(16, 3);
  bad[5] = std::nanf("");
  if (GetParam() == "none") {  // lossless: NaN travels as it is
    EXPECT_TRUE(std::isnan(maker(16)->decode(maker(16)->encode(bad, rng), 16)[5]));
  } else {
    EXPECT_THROW(maker(16)->encode(bad, rng), Error) << GetParam() << " must refuse NaN";
  }
  EXPECT_EQ(maker(0)->decode(maker(0)->encode(Vector(0), rng), 0).size(), 0) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, Conformance, ::testing::ValuesIn(compressor_registry().names()));

TEST(Compressors, NoneIsLosslessAndHalfCastsAreClose) {
  Rng rng(1, 0, Purpose::kCompression);
  const Vector v = random_vector(5000, 9);
  EXPECT_EQ(make("{kind: none}")->decode(make("{kind: none}")->encode(v, rng), 5000), v);
  for (const char* kind : {"fp16", "bf16"}) {
    auto c = make(std::string("{kind: ") + kind + "}");
    const Payload p = c->encode(v, rng);
    EXPECT_EQ(p.size(), 2u * 5000);
    const Vector back = c->decode(p, 5000);
    const double rel = std::string(kind) == "fp16" ? 1.0 / 2048 : 1.0 / 256;  // half an ulp
    for (Eigen::Index i = 0; i < v.size(); ++i) EXPECT_LE(std::abs(back[i] - v[i]), rel * std::abs(v[i]) + 1e-7) << kind;
  }
  // Exactly representable values survive both casts; fp16 saturates to infinity beyond 65504.
  Vector exact(3);
  exact << 1.5f, -0.25f, 1024.0f;
  EXPECT_EQ(make("{kind: fp16}")->decode(make("{kind: fp16}")->encode(exact, rng), 3), exact);
  EXPECT_EQ(make("{kind: bf16}")->decode(make("{kind: bf16}")->encode(exact, rng), 3), exact);
}

TEST(Compressors, TopKKeepsTheKLargestAndIsContractive) {
  Rng rng(1, 0, Purpose::kCompression);
  const std::int64_t d = 10000;
  const Vector v = random_vector(d, 4);
  auto c = make("{kind: topk, ratio: 0.01}");
  const Vector back = c->decode(c->encode(v, rng), d);
  const auto kept = (back.array() != 0.0f).count();
  EXPECT_EQ(kept, 100);
  float smallest_kept = INFINITY, largest_dropped = 0.0f;
  for (Eigen::Index i = 0; i < d; ++i) {
    if (back[i] != 0.0f) {
      EXPECT_EQ(back[i], v[i]);  // kept values are exact
      smallest_kept = std::min(smallest_kept, std::abs(v[i]));
    } else {
      largest_dropped = std::max(largest_dropped, std::abs(v[i]));
    }
  }
  EXPECT_GE(smallest_kept, largest_dropped);
  EXPECT_LE(sq(back - v), (1.0 - 100.0 / d) * sq(v));  // delta = k / d
  // k instead of a ratio.
  EXPECT_EQ((make("{kind: topk, k: 7}")->decode(make("{kind: topk, k: 7}")->encode(v, rng), d).array() != 0).count(), 7);
}

// The fast top-k selection (sampled threshold, candidates only) must pick exactly what a full
// sort picks: the k largest |v_j|, ties to the lower index. Values are nonzero, so the decoded
// support is the selection.
TEST(Compressors, TopKMatchesAFullSort) {
  Rng rng(1, 0, Purpose::kCompression);
  const auto check = [&](const Vector& v, std::int64_t k) {
    const std::int64_t d = v.size();
    std::vector<std::int64_t> order(static_cast<std::size_t>(d));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return std::abs(v[a]) > std::abs(v[b]); });
    Vector expected = Vector::Zero(d);
    for (std::int64_t j = 0; j < k; ++j) expected[order[j]] = v[order[j]];
    auto c = make("{kind: topk, k: " + std::to_string(k) + "}");
    EXPECT_EQ(c->decode(c->encode(v, rng), d), expected) << "d=" << d << " k=" << k;
  };
  for (std::int64_t d : {1, 5, 1000, 40'000, 300'000}) {
    const Vector normal = random_vector(d, static_cast<std::uint64_t>(d) + 11);
    Vector ties(d);  // five magnitudes, random signs: every cut falls inside a tie
    for (std::int64_t j = 0; j < d; ++j) ties[j] = static_cast<float>(1 + (j * 7919) % 5) * (normal[j] < 0 ? -1.0f : 1.0f);
    Vector constant = Vector::Constant(d, -2.5f);
    for (std::int64_t k : {std::int64_t{1}, std::max<std::int64_t>(1, d / 100), std::max<std::int64_t>(1, d / 3), d}) {
      check(normal, k);
      check(ties, k);
      check(constant, k);
    }
  }
}

TEST(Compressors, TopKPicksTheSmallestIndexCoding) {
  Rng rng(1, 0, Purpose::kCompression);
  auto c = make("{kind: topk, k: 10}");
  // Spread indices in a large vector: 32-bit indices (40 B) beat varints of big gaps? no: deltas of
  // ~100k need 3 bytes each (30 B), and the bitmap would be 125 kB. Expect varints.
  Vector sparse = Vector::Zero(1'000'000);
  for (int j = 0; j < 10; ++j) sparse[j * 99'991 + 5] = 1.0f + j;
  const Payload p = c->encode(sparse, rng);
  EXPECT_EQ(p[4 + 40], 1) << "delta-varint coding";
  EXPECT_EQ(p.size(), 4u + 40 + 1 + 1 * 1 + 9 * 3);  // first delta 5 (1 B), then 99,991 (3 B) x 9
  EXPECT_EQ(c->decode(p, 1'000'000), sparse);
  // Dense selection in a short vector: the bitmap (ceil(40/8) = 5 B) wins.
  auto half = make("{kind: topk, k: 20}");
  const Vector v = random_vector(40, 2);
  const Payload q = half->encode(v, rng);
  EXPECT_EQ(q[4 + 80], 2) << "bitmap coding";
  EXPECT_EQ(q.size(), 4u + 80 + 1 + 5);
}

TEST(Compressors, RandKUnbiasedAndSeedOnly) {
  const std::int64_t d = 200;
  const Vector v = random_vector(d, 5);
  auto c = make("{kind: randk, ratio: 0.1}");
  Rng rng(2, 0, Purpose::kCompression);
  const Payload p = c->encode(v, rng);
  EXPECT_EQ(p.size(), 8u + 4 + 4 * 20) << "seed + k + values: no indices";
  const int draws = 4000;
  const Vector mean = mean_of_draws(*c, v, rng, draws);
  // Each coordinate: variance (d/k - 1) v_j^2 per draw; 5 standard errors.
  for (Eigen::Index j = 0; j < d; ++j) EXPECT_NEAR(mean[j], v[j], 5.0 * std::sqrt(9.0 / draws) * std::abs(v[j]) + 1e-6);
  // The biased variant is contractive instead.
  auto biased = make("{kind: randk, ratio: 0.1, unbiased: false}");
  EXPECT_LE(sq(biased->decode(biased->encode(v, rng), d) - v), sq(v));
}

TEST(Compressors, QsgdUnbiasedWithTheDocumentedSize) {
  const std::int64_t d = 1000;
  const Vector v = random_vector(d, 6);
  auto c = make("{kind: qsgd, levels: 7, bucket: 128}");  // 4-bit codes: sign + 3 level bits
  Rng rng(3, 0, Purpose::kCompression);
  EXPECT_EQ(c->encode(v, rng).size(), static_cast<std::size_t>(4 * 8 + (d * 4 + 7) / 8));
  const int draws = 3000;
  const Vector mean = mean_of_draws(*c, v, rng, draws);
  // |Q(v)_j - v_j| <= bucket norm / s per draw.
  const double bound = 5.0 * v.segment(0, 128).norm() / 7.0 / std::sqrt(draws) * 2.0;
  for (Eigen::Index j = 0; j < d; ++j) EXPECT_NEAR(mean[j], v[j], bound);
}

TEST(Compressors, ScaledSignSizeAndContraction) {
  const std::int64_t d = 777;
  const Vector v = random_vector(d, 7);
  auto c = make("{kind: sign}");
  Rng rng(4, 0, Purpose::kCompression);
  const Payload p = c->encode(v, rng);
  EXPECT_EQ(p.size(), static_cast<std::size_t>(4 + (d + 7) / 8));
  const Vector back = c->decode(p, d);
  const double l1 = v.cwiseAbs().sum();
  EXPECT_NEAR(back.cwiseAbs().sum(), l1, 1e-2);
  // ||C(v) - v||^2 = ||v||^2 - ||v||_1^2 / d: contractive with delta = ||v||_1^2 / (d ||v||^2).
  EXPECT_NEAR(sq(back - v), sq(v) - l1 * l1 / d, 1e-2);
}

TEST(Compressors, PlainSignIsOneBitPerCoordinate) {
  const Vector v = random_vector(100, 8);
  auto c = make("{kind: sign, scaled: false}");
  Rng rng(4, 0, Purpose::kCompression);
  const Payload p = c->encode(v, rng);
  EXPECT_EQ(p.size(), 13u);
  EXPECT_EQ(c->decode(p, 100), v.array().sign().matrix());
}

TEST(Compressors, CountSketchIsLinearAndRecoversHeavyHitters) {
  const std::int64_t d = 5000;
  auto c = make("{kind: count_sketch, rows: 5, columns: 200, recover: 0.002}");  // recover k = 10
  Rng rng(6, 0, Purpose::kCompression);
  // Ten heavy coordinates over small noise: the k = 10 largest estimates are exactly those.
  Vector v = 0.01f * random_vector(d, 11);
  for (int j = 0; j < 10; ++j) v[j * 401 + 3] = (j % 2 ? -1.0f : 1.0f) * (5.0f + j);
  const Payload p = c->encode(v, rng);
  EXPECT_EQ(p.size(), 8u + 4 * 5 * 200);
  const Vector back = c->decode(p, d);
  EXPECT_EQ((back.array() != 0.0f).count(), 10);
  for (int j = 0; j < 10; ++j) EXPECT_NEAR(back[j * 401 + 3], v[j * 401 + 3], 0.2) << j;
  // Linear: the weighted mean of two sketches decodes like the sketch of the weighted mean.
  ASSERT_TRUE(c->linear());
  const Vector w = 0.01f * random_vector(d, 12) + 0.5f * v;
  const Payload q = c->encode(w, rng);
  const std::vector<const Payload*> both{&p, &q};
  const std::vector<double> weights{1.0, 3.0};
  const Vector mean = c->decode_mean(both, weights, d);
  const Vector direct = c->decode(c->encode((v + 3.0f * w) / 4.0f, rng), d);
  EXPECT_LT((mean - direct).norm(), 1e-5 * direct.norm());
  // Sketches of another shape are refused.
  EXPECT_THROW(make("{kind: count_sketch, rows: 4, columns: 200}")->decode(p, d), Error);
}

TEST(Compressors, RandomProjectionIsUnbiasedAndSendsOnlyASeedAndKValues) {
  const std::int64_t d = 300;  // padded to 512 for the Hadamard transform
  const Vector v = random_vector(d, 13);
  auto c = make("{kind: random_projection, k: 64}");
  Rng rng(7, 0, Purpose::kCompression);
  EXPECT_EQ(c->encode(v, rng).size(), 8u + 4 + 4 * 64);
  const int draws = 3000;
  const Vector mean = mean_of_draws(*c, v, rng, draws);
  // Per draw each coordinate's error has variance about (n / k - 1) ||v||^2 / n; 5 standard errors.
  const double sd = std::sqrt((512.0 / 64 - 1) * sq(v) / 512 / draws);
  for (Eigen::Index j = 0; j < d; ++j) EXPECT_NEAR(mean[j], v[j], 5.0 * sd) << j;
  // All n coordinates kept: the transform is orthonormal, the round trip exact up to rounding.
  auto full = make("{kind: random_projection, k: 512}");
  EXPECT_LT((full->decode(full->encode(v, rng), d) - v).norm(), 1e-5 * v.norm());
}

TEST(Compressors, PowerSgdIsExactOnLowRankAndImprovesWithWarmStarts) {
  // A 60 x 40 weight matrix and a 40-value bias; rank 2: P (60 x 2) + Q (40 x 2) + the raw bias.
  const std::vector<TensorShape> tensors{{0, 2400, 60, 40}, {2400, 40, 40, 1}};
  auto c = make("{kind: powersgd, rank: 2}", tensors);
  Rng rng(8, 0, Purpose::kCompression);
  const Vector a = random_vector(60, 20), b = random_vector(60, 21), x = random_vector(40, 22), y = random_vector(40, 23);
  Vector v(2440);
  Eigen::Map<Matrix>(v.data(), 60, 40) = a * x.transpose() + b * y.transpose();  // rank 2
  v.tail(40) = random_vector(40, 24);
  const Payload p = c->encode(v, rng);
  EXPECT_EQ(p.size(), 4u * (2 * (60 + 40) + 40));
  const Vector back = c->decode(p, 2440);
  EXPECT_LT((back - v).norm(), 1e-4 * v.norm());
  EXPECT_EQ(back.tail(40), v.tail(40));  // the bias travels raw
  // A full-rank matrix: each message's warm start continues the power iteration, so the error
  // falls towards the best rank-2 error (the tail of the singular values).
  auto warm = make("{kind: powersgd, rank: 2}", tensors);
  const Vector m = random_vector(2440, 25) + 0.5f * v;
  const double first = (warm->decode(warm->encode(m, rng), 2440) - m).norm();
  double last = first;
  for (int t = 0; t < 20; ++t) last = (warm->decode(warm->encode(m, rng), 2440) - m).norm();
  const Eigen::JacobiSVD<Matrix> svd(Eigen::Map<const Matrix>(m.data(), 60, 40));
  const double best = std::sqrt(svd.singularValues().tail(38).squaredNorm());
  EXPECT_LT(last, first);
  EXPECT_LT(last, 1.01 * best);
  EXPECT_THROW(make("{kind: powersgd}"), ConfigError);  // no model shapes
}

TEST(Compressors, Ef21ReceiverTracksEachSendersEstimate) {
  // A constant message under top-10% EF21: every round sends the 10 largest coordinates of what
  // the receiver's estimate still misses, so after 10 rounds the estimate is exact.
  const std::int64_t d = 100;
  auto sender_a = make("{kind: topk, ratio: 0.1, feedback: ef21}"), sender_b = make("{kind: topk, ratio: 0.1, feedback: ef21}");
  auto receiver = make("{kind: topk, ratio: 0.1, feedback: ef21}");
  Rng rng(9, 0, Purpose::kCompression);
  const Vector a = random_vector(d, 30), b = random_vector(d, 31);
  Vector got_a, got_b;
  for (int t = 0; t < 10; ++t) {
    got_a = receiver->receive(1, sender_a->encode(a, rng), d);
    got_b = receiver->receive(2, sender_b->encode(b, rng), d);
    if (t == 0) {
      EXPECT_EQ((got_a.array() != 0.0f).count(), 10);
    }
  }
  EXPECT_EQ(got_a, a);
  EXPECT_EQ(got_b, b);
  // EControl with eta 0 sends exactly EF21's bytes; with eta > 0 its error term changes them.
  auto ef21 = make("{kind: topk, ratio: 0.1, feedback: ef21}"), ec0 = make("{kind: topk, ratio: 0.1, feedback: econtrol, eta: 0}");
  auto ec = make("{kind: topk, ratio: 0.1, feedback: econtrol, eta: 0.5}");
  bool differs = false;
  for (int t = 0; t < 5; ++t) {
    const Vector v = random_vector(d, 40 + static_cast<std::uint64_t>(t));
    const Payload p = ef21->encode(v, rng);
    EXPECT_EQ(ec0->encode(v, rng), p);
    differs |= ec->encode(v, rng) != p;
  }
  EXPECT_TRUE(differs);
  EXPECT_THROW(make("{kind: topk, feedback: ef21, eta: 0.1}"), ConfigError);  // eta belongs to econtrol
}

TEST(Compressors, ErrorFeedbackCarriesWhatWasNotSent) {
  // EF telescopes: the sum of everything sent plus the final residual equals the sum of inputs.
  auto c = make("{kind: topk, ratio: 0.05, feedback: ef}");
  Rng rng(5, 0, Purpose::kCompression);
  const std::int64_t d = 400;
  Vector inputs = Vector::Zero(d), sent = Vector::Zero(d);
  for (int t = 0; t < 30; ++t) {
    const Vector v = random_vector(d, 100 + static_cast<std::uint64_t>(t));
    inputs += v;
    sent += c->decode(c->encode(v, rng), d);
  }
  // What is still owed is bounded (a contractive operator keeps the residual from growing) and
  // makes up the difference exactly: push it out with zero inputs until it is gone.
  const double owed = sq(inputs - sent);
  EXPECT_GT(owed, 0.0);
  for (int t = 0; t < 200; ++t) sent += c->decode(c->encode(Vector::Zero(d), rng), d);
  EXPECT_LT(sq(inputs - sent), 1e-6 * owed);
  // Without feedback the same loop loses the dropped coordinates for good.
  auto plain = make("{kind: topk, ratio: 0.05}");
  Vector plain_sent = Vector::Zero(d);
  for (int t = 0; t < 30; ++t) plain_sent += plain->decode(plain->encode(random_vector(d, 100 + static_cast<std::uint64_t>(t)), rng), d);
  EXPECT_GT(sq(inputs - plain_sent), 0.5 * sq(inputs));
}

TEST(Compressors, ConfigErrors) {
  EXPECT_THROW(make("{kind: topk, ratio: 0}"), ConfigError);
  EXPECT_THROW(make("{kind: qsgd, levels: 0}"), ConfigError);
  EXPECT_THROW(make("{kind: topk, feedback: ef22}"), ConfigError);
  EXPECT_THROW(make("{kind: none, ratio: 0.1}"), ConfigError);  // a key the operator does not take
  EXPECT_THROW(make("{kind: zip}"), ConfigError);
}

}  // namespace
}  // namespace starling
