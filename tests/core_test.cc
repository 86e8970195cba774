// core/: random streams, the plugin registry, config sections.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"

namespace starling {
namespace {

std::vector<std::uint64_t> draw(Rng rng, int n) {
  std::vector<std::uint64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(rng.next_u64());
  return out;
}

// Number of positions at which two sequences agree.
int matches(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
  int same = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) same += a[i] == b[i];
  return same;
}

// ---------------------------------------------------------------- Rng streams

TEST(Rng, SameKeyGivesIdenticalSequence) {
  const auto a = draw(Rng(42, 3, Purpose::kSampling), 1000);
  const auto b = draw(Rng(42, 3, Purpose::kSampling), 1000);
  EXPECT_EQ(a, b);
  EXPECT_EQ(Rng(42, 3, Purpose::kSampling).key(), Rng(42, 3, Purpose::kSampling).key());
}

TEST(Rng, DifferentSeedNodeOrPurposeGivesDifferentSequence) {
  const auto base = draw(Rng(42, 3, Purpose::kSampling), 1000);
  const std::vector<Rng> others = {Rng(42, 4, Purpose::kSampling), Rng(42, 2, Purpose::kSampling),
                                   Rng(42, kNoNode, Purpose::kSampling), Rng(42, 3, Purpose::kDataShuffle),
                                   Rng(42, 3, Purpose::kModelInit), Rng(43, 3, Purpose::kSampling),
                                   Rng(0, 3, Purpose::kSampling)};
  std::set<std::uint64_t> keys{Rng(42, 3, Purpose::kSampling).key()};
  for (const auto& other : others) {
    EXPECT_EQ(matches(base, draw(other, 1000)), 0);
    keys.insert(other.key());
  }
  EXPECT_EQ(keys.size(), others.size() + 1);
}

TEST(Rng, NodeAndPurposeAreNotInterchangeable) {
  // (node 1, purpose 2) must not alias (node 2, purpose 1).
  const auto a = draw(Rng(7, 1, static_cast<Purpose>(2)), 100);
  const auto b = draw(Rng(7, 2, static_cast<Purpose>(1)), 100);
  EXPECT_EQ(matches(a, b), 0);
}

TEST(Rng, DrawingFromOneStreamNeverChangesAnother) {
  const auto alone = draw(Rng(5, 1, Purpose::kDataShuffle), 200);
  // Interleave heavy use of other streams (same node other purpose, other node same purpose).
  Rng target(5, 1, Purpose::kDataShuffle);
  Rng other_purpose(5, 1, Purpose::kSampling);
  Rng other_node(5, 2, Purpose::kDataShuffle);
  std::vector<std::uint64_t> interleaved;
  for (int i = 0; i < 200; ++i) {
    for (int j = 0; j < 17; ++j) other_purpose.next_u64(), other_node.normal();
    interleaved.push_back(target.next_u64());
  }
  EXPECT_EQ(alone, interleaved);
  EXPECT_EQ(target.position(), 200u);
}

TEST(Rng, SubstreamsAreDistinctAndReproducible) {
  Rng parent(9, 4, Purpose::kSampling);
  const auto p = draw(parent, 500);
  const auto s0 = draw(parent.substream(0), 500);
  const auto s1 = draw(parent.substream(1), 500);
  const auto s0_again = draw(parent.substream(0), 500);
  EXPECT_EQ(s0, s0_again);
  EXPECT_EQ(matches(s0, s1), 0);
  EXPECT_EQ(matches(s0, p), 0);
  EXPECT_EQ(matches(s1, p), 0);
  // A substream of another node's stream is another sequence again.
  EXPECT_EQ(matches(s0, draw(Rng(9, 5, Purpose::kSampling).substream(0), 500)), 0);
  // Drawing from the parent does not move its substreams.
  Rng moved = parent;
  for (int i = 0; i < 100; ++i) moved.next_u64();
  EXPECT_EQ(draw(moved.substream(1), 500), s1);
}

TEST(Rng, UniformIsInUnitInterval) {
  Rng rng(1, 0, Purpose::kTest);
  double sum = 0.0;
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / kN, 0.5, 0.005);
}

TEST(Rng, BelowIsInRangeAndRoughlyUniform) {
  Rng rng(2, 0, Purpose::kTest);
  constexpr int kBins = 7, kPerBin = 10000;
  std::vector<int> counts(kBins, 0);
  for (int i = 0; i < kBins * kPerBin; ++i) {
    const auto v = rng.below(kBins);
    ASSERT_LT(v, static_cast<std::uint64_t>(kBins));
    ++counts[v];
  }
  double chi2 = 0.0;
  for (int c : counts) chi2 += (c - kPerBin) * (c - kPerBin) / static_cast<double>(kPerBin);
  // 6 degrees of freedom: P(chi2 > 30) is about 4e-5; a biased generator lands far above.
  EXPECT_LT(chi2, 30.0);
  EXPECT_EQ(rng.below(0), 0u);
  EXPECT_EQ(rng.below(1), 0u);
}

TEST(Rng, BelowHandlesHugeBounds) {
  Rng rng(3, 0, Purpose::kTest);
  const std::uint64_t n = (std::uint64_t{1} << 63) + 12345;
  int upper_half = 0;
  for (int i = 0; i < 10000; ++i) {
    const auto v = rng.below(n);
    ASSERT_LT(v, n);
    upper_half += v >= n / 2;
  }
  EXPECT_NEAR(upper_half, 5000, 300);
}

TEST(Rng, NormalHasMeanZeroAndUnitVariance) {
  Rng rng(4, 0, Purpose::kTest);
  constexpr int kN = 200000;
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < kN; ++i) {
    const double x = rng.normal();
    sum += x;
    sum_sq += x * x;
  }
  const double mean = sum / kN, var = sum_sq / kN - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);   // standard error 0.0022
  EXPECT_NEAR(var, 1.0, 0.02);    // standard error 0.0032
  Rng shifted(4, 1, Purpose::kTest);
  double s = 0.0;
  for (int i = 0; i < kN; ++i) s += shifted.normal(3.0, 2.0);
  EXPECT_NEAR(s / kN, 3.0, 0.03);
}

TEST(Rng, GammaHasMeanEqualToShape) {
  for (double shape : {0.1, 0.5, 1.0, 2.5, 10.0}) {
    Rng rng(5, 0, Purpose::kTest);
    constexpr int kN = 100000;
    double sum = 0.0;
    for (int i = 0; i < kN; ++i) {
      const double g = rng.gamma(shape);
      ASSERT_GE(g, 0.0) << "shape " << shape;
      ASSERT_TRUE(std::isfinite(g)) << "shape " << shape;
      sum += g;
    }
    const double se = std::sqrt(shape / kN);  // Var Gamma(k, 1) = k
    EXPECT_NEAR(sum / kN, shape, 5 * se) << "shape " << shape;
  }
}

TEST(Rng, ExponentialHasMeanOneOverRate) {
  Rng rng(6, 0, Purpose::kTest);
  double sum = 0.0;
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) sum += rng.exponential(4.0);
  EXPECT_NEAR(sum / kN, 0.25, 0.005);
}

TEST(Rng, DirichletIsOnTheSimplex) {
  Rng rng(7, 0, Purpose::kTest);
  for (double alpha : {1e-3, 0.1, 1.0, 10.0}) {
    for (int k : {1, 2, 10, 100}) {
      const auto p = rng.dirichlet(alpha, k);
      ASSERT_EQ(p.size(), static_cast<std::size_t>(k));
      double sum = 0.0;
      for (double x : p) {
        EXPECT_GE(x, 0.0);
        EXPECT_LE(x, 1.0);
        sum += x;
      }
      EXPECT_NEAR(sum, 1.0, 1e-12) << "alpha " << alpha << " k " << k;
    }
  }
}

TEST(Rng, DirichletConcentrationFollowsAlpha) {
  // Small alpha puts most mass on few coordinates; large alpha spreads it evenly.
  auto mean_max = [](double alpha) {
    Rng rng(8, 0, Purpose::kTest);
    double total = 0.0;
    for (int i = 0; i < 500; ++i) {
      const auto p = rng.dirichlet(alpha, 10);
      total += *std::max_element(p.begin(), p.end());
    }
    return total / 500;
  };
  EXPECT_GT(mean_max(0.1), 0.6);
  EXPECT_LT(mean_max(100.0), 0.15);
}

TEST(Rng, SampleWithoutReplacementIsDistinct) {
  Rng rng(9, 0, Purpose::kTest);
  for (auto [n, k] : std::vector<std::pair<int, int>>{{1000, 50}, {100, 100}, {10, 0}, {1, 1}, {20, 10}}) {
    const auto s = rng.sample_without_replacement(n, k);
    ASSERT_EQ(s.size(), static_cast<std::size_t>(k));
    std::set<std::int32_t> distinct(s.begin(), s.end());
    EXPECT_EQ(distinct.size(), s.size()) << n << " choose " << k;
    for (auto v : s) {
      EXPECT_GE(v, 0);
      EXPECT_LT(v, n);
    }
  }
  // Every element gets picked about equally often.
  std::vector<int> hits(20, 0);
  for (int t = 0; t < 20000; ++t)
    for (auto v : rng.sample_without_replacement(20, 5)) ++hits[static_cast<std::size_t>(v)];
  for (int h : hits) EXPECT_NEAR(h, 5000, 350);
}

TEST(Rng, ShuffleIsAPermutation) {
  Rng rng(10, 0, Purpose::kTest);
  std::vector<int> v(500);
  std::iota(v.begin(), v.end(), 0);
  auto shuffled = v;
  rng.shuffle(std::span(shuffled));
  EXPECT_NE(shuffled, v);
  std::sort(shuffled.begin(), shuffled.end());
  EXPECT_EQ(shuffled, v);
}

TEST(Rng, Mix64IsABijectionOnSamples) {
  std::set<std::uint64_t> out;
  for (std::uint64_t x = 0; x < 10000; ++x) out.insert(mix64(x));
  EXPECT_EQ(out.size(), 10000u);
  EXPECT_NE(mix64(1), 1u);
}

// ---------------------------------------------------------------- Registry

struct Widget {
  explicit Widget(int v) : value(v) {}
  int value;
};

TEST(Registry, CreatesByNameAndListsSortedNames) {
  Registry<Widget, int> r("widget");
  r.add("zeta", "last", [](int x) { return std::make_unique<Widget>(x + 1); });
  r.add("alpha", "first", [](int x) { return std::make_unique<Widget>(x * 10); });
  EXPECT_EQ(r.names(), (std::vector<std::string>{"alpha", "zeta"}));
  EXPECT_TRUE(r.contains("zeta"));
  EXPECT_FALSE(r.contains("beta"));
  EXPECT_EQ(r.create("alpha", "w.kind", 4)->value, 40);
  EXPECT_EQ(r.create("zeta", "w.kind", 4)->value, 5);
  EXPECT_EQ(r.description("zeta"), "last");
  EXPECT_EQ(r.kind(), "widget");
}

TEST(Registry, UnknownNameNamesKeyPathAndListsKnownNames) {
  Registry<Widget> r("aggregator");
  r.add("mean", "weighted mean", [] { return std::make_unique<Widget>(0); });
  try {
    r.create("meen", "aggregator.kind");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.key_path(), "aggregator.kind");
    EXPECT_NE(what.find("aggregator.kind: \"meen\" is unknown aggregator; known: mean"), std::string::npos) << what;
  }
  r.add("median", "coordinate-wise median", [] { return std::make_unique<Widget>(1); });
  try {
    r.require("krum", "aggregator.kind");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("known: mean, median"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(r.require("median", "aggregator.kind"));
}

TEST(Registry, DuplicateRegistrationThrows) {
  Registry<Widget> r("compressor");
  r.add("topk", "", [] { return std::make_unique<Widget>(0); });
  EXPECT_THROW(r.add("topk", "again", [] { return std::make_unique<Widget>(1); }), std::logic_error);
  EXPECT_EQ(r.names().size(), 1u);
}

// ---------------------------------------------------------------- Section

TEST(Section, ReadsValuesAndRecordsDefaults) {
  Section root(YAML::Load("rounds: 7\ntrain: {lr: 0.5}\n"));
  EXPECT_EQ(root.get_int("rounds", 100, 1), 7);
  EXPECT_EQ(root.get<std::string>("name", "dflt"), "dflt");
  Section train = root.child("train");
  EXPECT_EQ(train.path(), "train");
  EXPECT_EQ(train.path("lr"), "train.lr");
  EXPECT_DOUBLE_EQ(train.get_double("lr", 0.05, 0.0, 1e6, true), 0.5);
  EXPECT_EQ(train.get_int("batch_size", 32, 1), 32);
  EXPECT_NO_THROW(root.reject_unknown_keys());
  const YAML::Node r = root.resolved();
  EXPECT_EQ(r["rounds"].as<int>(), 7);
  EXPECT_EQ(r["name"].as<std::string>(), "dflt");
  EXPECT_DOUBLE_EQ(r["train"]["lr"].as<double>(), 0.5);
  EXPECT_EQ(r["train"]["batch_size"].as<int>(), 32);
}

TEST(Section, OutOfRangeNamesKeyAndRange) {
  Section root(YAML::Load("train: {lr: -1}"));
  Section train = root.child("train");
  try {
    train.get_double("lr", 0.05, 0.0, 1e6, true);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "train.lr");
    EXPECT_NE(std::string(e.what()).find("train.lr: -1 is out of range; must be > 0"), std::string::npos) << e.what();
  }
  Section r2(YAML::Load("clients: 0"));
  EXPECT_THROW(r2.get_int("clients", 10, 1, 100), ConfigError);
  Section r3(YAML::Load("fraction: .nan"));
  EXPECT_THROW(r3.get_double("fraction", 0.1, 0.0, 1.0), ConfigError);
}

TEST(Section, WrongTypeNamesKeyAndType) {
  Section root(YAML::Load("rounds: abc\nname: [1, 2]\nflag: maybe"));
  try {
    root.get_int("rounds", 100, 1);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "rounds");
    EXPECT_NE(std::string(e.what()).find("\"abc\" is not an integer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(root.get<std::string>("name", ""), ConfigError);
  EXPECT_THROW(root.get<bool>("flag", false), ConfigError);
}

TEST(Section, ChoiceListsAllowedValues) {
  Section root(YAML::Load("kind: lognrmal"));
  try {
    root.get_choice("kind", "fixed", {"fixed", "lognormal"});
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("known: fixed, lognormal"), std::string::npos) << e.what();
  }
}

TEST(Section, UnknownKeyIsReportedWithSuggestion) {
  Section root(YAML::Load("rouds: 5\n"));
  root.get_int("rounds", 100, 1);
  try {
    root.reject_unknown_keys();
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "rouds");
    EXPECT_NE(std::string(e.what()).find("did you mean rounds?"), std::string::npos) << e.what();
  }
  Section nested(YAML::Load("train: {lr: 0.1, bach_size: 8}\n"));
  Section train = nested.child("train");
  train.get_double("lr", 0.05, 0.0);
  train.get_int("batch_size", 32, 1);
  try {
    nested.reject_unknown_keys();
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "train.bach_size");
    EXPECT_NE(std::string(e.what()).find("did you mean train.batch_size?"), std::string::npos) << e.what();
  }
  // Nothing close: no suggestion, but still an error.
  Section far(YAML::Load("completely_different: 1\n"));
  far.get_int("rounds", 100, 1);
  EXPECT_THROW(far.reject_unknown_keys(), ConfigError);
}

TEST(Section, ChildMustBeAMapping) {
  Section root(YAML::Load("data: 5"));
  EXPECT_THROW(root.child("data"), ConfigError);
  EXPECT_THROW(Section(YAML::Load("[1, 2]")), ConfigError);
}

TEST(Section, ApplyOverrideSetsNestedValues) {
  YAML::Node doc = YAML::Load("rounds: 3\ntrain: {lr: 0.1}\n");
  Section::apply_override(doc, "train.lr=0.5");
  Section::apply_override(doc, "rounds=9");
  Section::apply_override(doc, "network.latency_ms=5");
  Section::apply_override(doc, "model.hidden=[8, 4]");
  EXPECT_DOUBLE_EQ(doc["train"]["lr"].as<double>(), 0.5);
  EXPECT_EQ(doc["rounds"].as<int>(), 9);
  EXPECT_EQ(doc["network"]["latency_ms"].as<int>(), 5);
  EXPECT_EQ(doc["model"]["hidden"].as<std::vector<int>>(), (std::vector<int>{8, 4}));
  YAML::Node empty;
  Section::apply_override(empty, "seed=4");
  EXPECT_EQ(empty["seed"].as<int>(), 4);
}

TEST(Section, ApplyOverrideRejectsBadSyntax) {
  YAML::Node doc = YAML::Load("rounds: 3\n");
  EXPECT_THROW(Section::apply_override(doc, "rounds"), ConfigError);
  EXPECT_THROW(Section::apply_override(doc, "=5"), ConfigError);
  EXPECT_THROW(Section::apply_override(doc, "a..b=5"), ConfigError);
  EXPECT_THROW(Section::apply_override(doc, "rounds.x=5"), ConfigError);  // rounds is a scalar
  EXPECT_THROW(Section::apply_override(doc, "x=[1, 2"), ConfigError);     // not valid YAML
  EXPECT_EQ(doc["rounds"].as<int>(), 3);
}

}  // namespace
}  // namespace starling
