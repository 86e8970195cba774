// Byzantine attacks: the attack functions, who attacks, config errors, and FedAvg runs under attack.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "config/experiment.h"
#include "core/rng.h"
#include "nodes/attack.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

Vector random_vector(std::int64_t d, std::uint64_t seed) {
  Rng rng(seed, 0, Purpose::kTest);
  Vector v(d);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

TEST(AttackFunctions, SignFlipAlieIpmAndLabelFlipDoWhatTheySay) {
  const Vector a = random_vector(5, 1), b = random_vector(5, 2), c = random_vector(5, 3);
  EXPECT_EQ(sign_flip(a, 1.0), -a);
  EXPECT_EQ(sign_flip(a, 2.0), -2.0f * a);
  const std::vector<const Vector*> honest = {&a, &b, &c};
  const Vector alie_out = alie(honest, 1.5);
  const Vector ipm_out = ipm(honest, 0.1);
  for (Eigen::Index j = 0; j < 5; ++j) {
    const double mean = (a[j] + b[j] + c[j]) / 3.0;
    const double var = (std::pow(a[j] - mean, 2) + std::pow(b[j] - mean, 2) + std::pow(c[j] - mean, 2)) / 2.0;
    EXPECT_NEAR(alie_out[j], mean - 1.5 * std::sqrt(var), 1e-5);
    EXPECT_NEAR(ipm_out[j], -0.1 * mean, 1e-6);
  }
  // Baruch et al.: n = 50, f = 10 -> s = 16, z = Phi^-1(34 / 50) = 0.4677.
  EXPECT_NEAR(alie_default_z(50, 10), 0.46770, 1e-4);
  EXPECT_NEAR(alie_default_z(26, 5), 0.39573, 1e-4);  // s = 9, Phi^-1(17 / 26)

  Dataset data;
  data.num_classes = 10;
  data.y = {0, 3, 9, 5};
  const std::vector<std::int32_t> indices = {0, 1, 2};
  flip_labels(data, indices);
  EXPECT_EQ(data.y, (std::vector<std::int32_t>{9, 6, 0, 5}));
}

TEST(AttackFunctions, ServerSideCorruptionTouchesOnlyAttackers) {
  std::vector<Vector> original;
  for (int i = 0; i < 5; ++i) original.push_back(random_vector(8, 10 + static_cast<std::uint64_t>(i)));
  auto corrupt = [&](AttackKind kind, int round) {
    AttackParams p;
    p.kind = kind;
    p.fraction = 0.4;
    p.scale = 3.0;
    Attack attack(p, {4, 2}, 7);
    std::vector<Vector> us = original;
    std::map<NodeId, Vector*> updates;
    for (int i = 0; i < 5; ++i) updates[i] = &us[static_cast<std::size_t>(i)];
    attack.corrupt(round, updates);
    for (int i : {0, 1, 3}) EXPECT_EQ(us[static_cast<std::size_t>(i)], original[static_cast<std::size_t>(i)]);
    return us;
  };
  const auto flipped = corrupt(AttackKind::kSignFlip, 1);
  EXPECT_EQ(flipped[2], -3.0f * original[2]);
  EXPECT_EQ(flipped[4], -3.0f * original[4]);
  const auto scaled = corrupt(AttackKind::kScaled, 1);
  EXPECT_EQ(scaled[2], 3.0f * original[2]);
  // ALIE and IPM: from the honest three only; the attackers send one vector.
  const std::vector<const Vector*> honest = {&original[0], &original[1], &original[3]};
  const auto little = corrupt(AttackKind::kAlie, 1);
  EXPECT_EQ(little[2], little[4]);
  EXPECT_LT((little[2] - alie(honest, alie_default_z(5, 2))).norm(), 1e-6);
  const auto inner = corrupt(AttackKind::kIpm, 1);
  EXPECT_LT((inner[4] - ipm(honest, 0.1)).norm(), 1e-6);
  // Gaussian noise: fixed by (seed, attacker, round), not by the honest update.
  const auto g1 = corrupt(AttackKind::kGaussian, 1), g1again = corrupt(AttackKind::kGaussian, 1);
  const auto g2 = corrupt(AttackKind::kGaussian, 2);
  EXPECT_EQ(g1[2], g1again[2]);
  EXPECT_NE(g1[2], g1[4]);
  EXPECT_NE(g1[2], g2[2]);
  EXPECT_GT(g1[2].squaredNorm(), 0.1);  // N(0, 1) noise, not the update
  EXPECT_LT(g1[2].squaredNorm(), 30.0);
  const auto poisoned = corrupt(AttackKind::kLabelFlip, 1);  // its harm is in the data
  EXPECT_EQ(poisoned[2], original[2]);
}

TEST(AttackFunctions, AttackersAreChosenFromTheSeed) {
  for (const auto& [fraction, clients] : std::vector<std::pair<double, int>>{{0.2, 50}, {0.1, 7}, {0.25, 10}, {0.0, 9}}) {
    const auto a = choose_attackers(fraction, clients, 42);
    EXPECT_EQ(a.size(), static_cast<std::size_t>(std::lround(fraction * clients)));
    EXPECT_EQ(a, choose_attackers(fraction, clients, 42));
    EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
    EXPECT_EQ(std::set<int>(a.begin(), a.end()).size(), a.size());
    for (int c : a) EXPECT_TRUE(c >= 0 && c < clients);
  }
  EXPECT_NE(choose_attackers(0.2, 50, 42), choose_attackers(0.2, 50, 43));
}

// ---------------------------------------------------------------- through the config

const std::string kSynthetic = R"yaml(
name: attack_synthetic
seed: 7
rounds: 30
data: { dataset: synthetic, clients: 20 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32, local_epochs: 1 }
sampling: { kind: uniform, fraction: 1.0 }
)yaml";

std::unique_ptr<RunPlan> plan_for(const std::vector<std::string>& overrides) {
  return test::plan_from(kSynthetic, overrides);
}

MemorySink run(const std::vector<std::string>& overrides) { return test::run_plan(*plan_for(overrides)); }

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key) {
  try {
    plan_for(overrides);
    ADD_FAILURE() << "no error for " << overrides.back();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(AttackConfig, BadSettingsNameTheKey) {
  expect_config_error({"attack.kind=sign_flip", "attack.fraction=0.5"}, "attack.fraction");
  expect_config_error({"attack.kind=sign_flip", "attack.fraction=-0.1"}, "attack.fraction");
  expect_config_error({"attack.kind=flip"}, "attack.kind");
  expect_config_error({"attack.kind=sign_flip", "attack.std=2"}, "attack.std");  // gaussian's key
  expect_config_error({"attack.kind=alie", "attack.z=-1"}, "attack.z");
  expect_config_error({"attack.kind=ipm", "protocol.kind=scaffold"}, "attack.kind");
  expect_config_error({"attack.scale=2"}, "attack.scale");  // kind none reads only the fraction
}

TEST(AttackRuns, ByzantineNodesAreRecordedAtRoundZero) {
  const MemorySink s = run({"attack.kind=sign_flip", "attack.fraction=0.2", "rounds=2"});
  std::vector<NodeId> byzantine;
  for (const auto& m : s.metrics)
    if (m.name == "byzantine") {
      EXPECT_EQ(m.round, 0);
      EXPECT_EQ(m.value, 1.0);
      byzantine.push_back(m.node);
    }
  std::vector<NodeId> expected;
  for (int c : choose_attackers(0.2, 20, 7)) expected.push_back(c + 1);  // client c is node c + 1
  EXPECT_EQ(byzantine, expected);
  EXPECT_EQ(byzantine.size(), 4u);
}

TEST(AttackRuns, SignFlipBreaksTheMeanButNotTheRobustRules) {
  // The samples split iid (LEAF's natural split is so heterogeneous that median and trimmed mean
  // fail even without attackers). 4 of 20 clients send -4 x their update: the mean's step is about
  // (16 - 16) / 20 of the honest one, so it stops learning (with -1 x it only slows down); median
  // and trimmed mean stay near the clean run.
  const double clean = run({"data.partition.kind=iid"}).last("test_accuracy");
  const std::vector<std::string> attack = {"data.partition.kind=iid", "attack.kind=sign_flip", "attack.fraction=0.2",
                                           "attack.scale=4"};
  auto with = [&](const std::string& aggregator) {
    auto o = attack;
    o.push_back(aggregator);
    return run(o).last("test_accuracy");
  };
  const double mean = with("aggregator={kind: mean}");
  const double median = with("aggregator={kind: median}");
  const double trimmed = with("aggregator={kind: trimmed_mean, f: 4}");
  EXPECT_GT(clean, 0.8);
  EXPECT_LT(mean, clean - 0.3);
  EXPECT_GT(median, clean - 0.1);
  EXPECT_GT(trimmed, clean - 0.1);
}

TEST(AttackRuns, LabelFlipPoisonsOnlyTheAttackersData) {
  auto clean = plan_for({});
  auto poisoned = plan_for({"attack.kind=label_flip", "attack.fraction=0.2"});
  const auto attackers = choose_attackers(0.2, 20, 7);
  const auto& part = poisoned->task->partition;
  const int classes = clean->task->train->num_classes;
  std::size_t flipped = 0;
  for (std::size_t c = 0; c < part.size(); ++c) {
    const bool attacker = std::binary_search(attackers.begin(), attackers.end(), static_cast<int>(c));
    for (auto i : part[c]) {
      const auto y0 = clean->task->train->y[static_cast<std::size_t>(i)], y1 = poisoned->task->train->y[static_cast<std::size_t>(i)];
      EXPECT_EQ(y1, attacker ? classes - 1 - y0 : y0);
      flipped += attacker;
    }
  }
  EXPECT_GT(flipped, 0u);
}

}  // namespace
}  // namespace starling
