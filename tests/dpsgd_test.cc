// Decentralized protocols end to end through the SimRuntime API (D-PSGD, gossip learning):
// bytes, consensus, gossip steps, merge schedules, determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <numeric>
#include <random>
#include <set>

#include "config/experiment.h"
#include "learning/training.h"
#include "nodes/attack.h"
#include "nodes/modest.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

const std::string kConfig = R"yaml(
seed: 3
rounds: 12
data: { dataset: synthetic, clients: 12 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32 }
protocol: { kind: dpsgd }
topology: { kind: ring }
eval: { every: 3, nodes: 4 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides = {}) {
  return test::plan_from(kConfig, overrides);
}

MemorySink run(const std::vector<std::string>& overrides = {}, int threads = 1) {
  return test::run_plan(*plan(overrides), threads);
}

std::vector<double> series(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name) out.push_back(m.value);
  return out;
}

// Every metric row but wall_seconds has the same name, time and bits; traffic is the same.
void expect_identical(const MemorySink& one, const MemorySink& two) {
  ASSERT_EQ(one.metrics.size(), two.metrics.size());
  for (std::size_t i = 0; i < one.metrics.size(); ++i) {
    if (one.metrics[i].name == "wall_seconds") continue;
    EXPECT_EQ(one.metrics[i].name, two.metrics[i].name);
    EXPECT_EQ(std::memcmp(&one.metrics[i].value, &two.metrics[i].value, sizeof(double)), 0) << one.metrics[i].name;
    EXPECT_EQ(one.metrics[i].time, two.metrics[i].time);
  }
  EXPECT_EQ(one.traffic_rows, two.traffic_rows);
}

constexpr std::int64_t kModelBytes = 32 + 4 * (60 * 10 + 10);  // header + logreg on 60 features

TEST(Dpsgd, RingSendsEachModelToBothNeighboursEveryRound) {
  const MemorySink s = run();
  EXPECT_EQ(s.ended.size(), 12u);
  EXPECT_EQ(s.last("bytes_total"), 12.0 * 12 * 2 * kModelBytes);
  for (const auto& t : s.traffic_rows) {
    EXPECT_EQ(t.messages, 1);
    EXPECT_EQ(std::abs(t.src - t.dst) % 10, 1) << t.src << "->" << t.dst;  // ring neighbours (0-11 wraps)
  }
  EXPECT_GT(s.last("test_accuracy"), 0.3) << "chance is 0.1";
  EXPECT_EQ(series(s, "node_accuracy_mean").size(), 4u);  // rounds 3, 6, 9, 12
  // The spectral gap, once, equal to the ring's closed form.
  const auto gap = series(s, "spectral_gap");
  ASSERT_EQ(gap.size(), 1u);
  EXPECT_NEAR(gap[0], 2.0 / 3.0 * (1.0 - std::cos(2.0 * std::numbers::pi / 12)), 1e-12);
}

TEST(Dpsgd, CommunicateEveryAndGossipStepsScaleBytes) {
  EXPECT_EQ(run({"protocol.communicate_every=3"}).last("bytes_total"), 4.0 * 12 * 2 * kModelBytes);
  EXPECT_EQ(run({"protocol.gossip_steps=3"}).last("bytes_total"), 3.0 * 12 * 12 * 2 * kModelBytes);
}

TEST(Dpsgd, CompleteGraphReachesExactConsensus) {
  const auto consensus = series(run({"topology.kind=complete"}), "consensus_distance");
  ASSERT_EQ(consensus.size(), 12u);
  for (double c : consensus) EXPECT_LT(c, 1e-9);
}

TEST(Dpsgd, MoreGossipStepsTightenConsensus) {
  const double q1 = run({"protocol.gossip_steps=1"}).last("consensus_distance");
  const double q4 = run({"protocol.gossip_steps=4"}).last("consensus_distance");
  EXPECT_GT(q1, 0.0);
  EXPECT_LT(q4, 0.5 * q1);
  // Without any gossip the nodes drift apart.
  EXPECT_GT(run({"protocol.gossip_steps=0"}).last("consensus_distance"), q1);
}

TEST(Dpsgd, OnePeerExponentialIsDirectedOnePeerPerRound) {
  const MemorySink s = run({"topology.kind=one_peer_exponential"});
  EXPECT_EQ(s.last("bytes_total"), 12.0 * 12 * 1 * kModelBytes);
  EXPECT_GT(s.last("test_accuracy"), 0.3);
}

TEST(Dpsgd, IdenticalMetricsForOneAndTwoThreads) {
  const std::vector<std::string> o = {"model.kind=mlp", "model.hidden=[16]", "protocol.gossip_steps=2"};
  const MemorySink one = run(o, 1), two = run(o, 2);
  expect_identical(one, two);
}

TEST(Dpsgd, ConfigErrors) {
  test::TempDir dir;
  const std::string edges = dir.file("split.txt");
  std::ofstream(edges) << "0 1\n2 3\n";
  try {
    plan({"data.clients=4", "topology.kind=edges_file", "topology.path=" + edges});
    FAIL() << "a disconnected graph must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not connected"), std::string::npos) << e.what();
  }
  EXPECT_THROW(plan({"protocol.gossip_step=2"}), ConfigError);    // typo
  EXPECT_THROW(plan({"topology.mixing=average"}), ConfigError);   // unknown rule
  EXPECT_NO_THROW(plan({"topology.mixing=uniform"}));
  // eval.nodes belongs to decentralized protocols only.
  EXPECT_THROW(plan({"protocol.kind=fedavg", "topology.kind=star"}), ConfigError);
}


TEST(Dpsgd, SingleGlobalMergeAveragesExactlyAfterThePoint) {
  // Sparse pulls (r = 0.2) until 75% of training, then every node pulls all others.
  const MemorySink s = run({"topology.kind=complete", "protocol.merge.schedule=truncate", "protocol.merge.point=0.75"});
  const auto consensus = series(s, "consensus_distance");
  ASSERT_EQ(consensus.size(), 12u);
  for (int r = 9; r <= 12; ++r) EXPECT_LT(consensus[static_cast<std::size_t>(r - 1)], 1e-9) << "round " << r;
  EXPECT_GT(consensus[7], 1e-6);  // round 8 (progress 0.67) is still sparse
  EXPECT_TRUE(series(s, "spectral_gap").empty());  // no fixed W to report
}

TEST(Dpsgd, MergeScheduleChargesExactlyThePulledModels) {
  // An integer r pulls exactly r models per node per round.
  const MemorySink s = run({"topology.kind=complete", "protocol.merge.r_start=2"});
  EXPECT_EQ(s.last("bytes_total"), 12.0 * 12 * 2 * kModelBytes);
  // r = 0: nobody talks, and the models drift apart.
  const MemorySink silent = run({"topology.kind=complete", "protocol.merge.r_start=0"});
  EXPECT_EQ(silent.last("bytes_total"), 0.0);
  EXPECT_GT(silent.last("consensus_distance"), s.last("consensus_distance"));
  EXPECT_THROW(plan({"protocol.merge.schedule=sudden"}), ConfigError);
  EXPECT_THROW(plan({"protocol.merge.r_start=40"}), ConfigError);  // more peers than nodes
}


// ---------------------------------------------------------------- gossip learning

std::vector<std::string> gossip(std::vector<std::string> more = {}) {
  more.insert(more.begin(), {"protocol.kind=gossip", "rounds=20", "eval.every=5"});
  return more;
}

TEST(Gossip, PushesWholeModelsAtTheWakeRateAndLearns) {
  const MemorySink s = run(gossip());
  EXPECT_EQ(s.ended.size(), 20u);
  const double bytes = s.last("bytes_total");
  EXPECT_EQ(std::fmod(bytes, static_cast<double>(kModelBytes)), 0.0) << "every message is one model";
  const double pushes = bytes / kModelBytes;
  EXPECT_NEAR(pushes, 12 * 20, 12 * 20 * 0.25) << "about one push per node per virtual second";
  std::int64_t traffic = 0;
  for (const auto& t : s.traffic_rows) traffic += t.bytes;
  EXPECT_EQ(static_cast<double>(traffic), bytes);
  EXPECT_GT(s.last("test_accuracy"), 0.3);
  // Rounds are periods of virtual time.
  for (const auto& m : s.metrics) {
    if (m.name == "participants") {
      EXPECT_EQ(m.time, m.round * kNanosPerSecond);
    }
  }
}

TEST(Gossip, FasterWakeRateMeansMoreTrafficAndTighterConsensus) {
  const MemorySink slow = run(gossip({"protocol.wake_rate=0.5", "protocol.round_seconds=2"}));
  const MemorySink fast = run(gossip({"protocol.wake_rate=4", "protocol.round_seconds=2"}));
  EXPECT_GT(fast.last("bytes_total"), 4 * slow.last("bytes_total"));
  EXPECT_LT(fast.last("consensus_distance"), slow.last("consensus_distance"));
}

TEST(Gossip, IdenticalMetricsForOneAndTwoThreads) {
  const auto o = gossip({"model.kind=mlp", "model.hidden=[16]", "compute.kind=lognormal", "protocol.averaging=plain",
                         "protocol.variance_correction=true", "protocol.independent_init=true"});
  const MemorySink one = run(o, 1), two = run(o, 2);
  expect_identical(one, two);
}

TEST(Gossip, ConfigErrors) {
  EXPECT_THROW(plan(gossip({"protocol.averaging=median"})), ConfigError);
  EXPECT_THROW(plan(gossip({"protocol.wake_rate=0"})), ConfigError);
  EXPECT_THROW(plan(gossip({"topology.kind=one_peer_exponential"})), ConfigError);
  EXPECT_THROW(plan(gossip({"protocol.gossip_steps=2"})), ConfigError);  // a dpsgd key
}


// ---------------------------------------------------------------- MoDeST

std::vector<std::string> modest(std::vector<std::string> more = {}) {
  more.insert(more.begin(), {"protocol.kind=modest", "protocol.sample=4", "rounds=15", "data.clients=20"});
  return more;
}

TEST(Modest, SameViewSameOrder) {
  std::vector<ModestViewEntry> view(30, ModestViewEntry{8, 0, 1});
  view[5].present = 0;  // gone
  view[7].round = 1;    // silent since round 1
  const auto a = modest_order(9, 10, view, 0, 5), b = modest_order(9, 10, view, 12, 5);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 28u);
  EXPECT_EQ(std::count(a.begin(), a.end(), 5), 0);
  EXPECT_EQ(std::count(a.begin(), a.end(), 7), 0);  // silent for more than 5 rounds
  EXPECT_NE(modest_order(9, 11, view, 0, 5), a);    // another round, another order
  const auto own = modest_order(9, 10, view, 5, 5);
  EXPECT_EQ(std::count(own.begin(), own.end(), 5), 1) << "a node always counts itself";
}

TEST(Modest, SamplesTrainAndChargesControlMessages) {
  const MemorySink s = run(modest());
  EXPECT_EQ(s.ended.size(), 15u);
  for (const auto& m : s.metrics) {
    if (m.name == "participants") {
      EXPECT_EQ(m.value, 4.0);
    }
  }
  EXPECT_GT(s.last("test_accuracy"), 0.3);
  // Per round at most: 4 trained models in, 4 aggregated models out (each model + a 20-node view).
  const double model_message = kModelBytes + 20 * 4;
  EXPECT_LE(s.last("bytes_total"), 15 * 8 * model_message + 15 * 40 * 32.0);
  EXPECT_GT(s.last("bytes_total"), 15 * 6 * model_message);  // the aggregator may be a trainer itself
  std::int64_t small = 0;
  for (const auto& t : s.traffic_rows) small += t.bytes == 32 * t.messages;
  EXPECT_GT(small, 0) << "pings, pongs and ACKs travel and are charged";
}

TEST(Modest, SurvivesEightyPercentOfNodesCrashing) {
  const MemorySink s = run(modest({"rounds=30", "protocol.crash.fraction=0.8", "protocol.crash.at_seconds=2",
                                   "protocol.aggregation_timeout=20", "protocol.aggregators=2"}));
  EXPECT_EQ(s.ended.size(), 30u) << "every round completes after the crash";
  EXPECT_GT(s.last("test_accuracy"), 0.2);
}

TEST(Modest, IdenticalMetricsForOneAndTwoThreads) {
  const auto o = modest({"protocol.crash.fraction=0.5", "protocol.crash.at_seconds=1", "protocol.aggregation_timeout=10",
                         "model.kind=mlp", "model.hidden=[16]"});
  const MemorySink one = run(o, 1), two = run(o, 2);
  expect_identical(one, two);
}


TEST(Modest, ViewEntriesMergeByIndexThenRound) {
  ModestViewEntry mine{5, 1, 1};
  merge_view_entry(mine, {9, 1, 1});
  EXPECT_EQ(mine.round, 9);
  merge_view_entry(mine, {3, 1, 0});  // same membership, seen gone: gone wins
  EXPECT_EQ(mine.present, 0);
  merge_view_entry(mine, {4, 2, 1});  // a later join (higher index) overrides
  EXPECT_EQ(mine.index, 2);
  EXPECT_EQ(mine.present, 1);
  merge_view_entry(mine, {99, 1, 0});  // stale news is ignored
  EXPECT_EQ(mine.present, 1);
}

TEST(Modest, JoinersTrainOnlyAfterJoiningAndLeaversStopSending) {
  // With seed 3 and 20 nodes: the first 4 of the churn permutation join at 1 s, the next 4 leave at 2 s.
  const auto o = modest({"rounds=40", "protocol.join.fraction=0.2", "protocol.join.at_seconds=1",
                         "protocol.leave.fraction=0.2", "protocol.leave.at_seconds=2"});
  const MemorySink s = run(o);
  EXPECT_EQ(s.ended.size(), 40u);
  Rng churn(3, kNoNode, Purpose::kChurn);
  const auto order = churn.sample_without_replacement(20, 8);
  const std::set<NodeId> joiners(order.begin(), order.begin() + 4), leavers(order.begin() + 4, order.end());
  // The round in progress at each churn time, from the rounds' virtual times.
  int join_round = 0, leave_round = 0;
  for (const auto& m : s.metrics) {
    if (m.name != "participants") continue;
    if (m.time < kNanosPerSecond) join_round = m.round;
    if (m.time < 2 * kNanosPerSecond) leave_round = m.round;
  }
  ASSERT_GT(join_round, 0);
  ASSERT_LT(leave_round, 38) << "the run must go on well past the leave";
  bool joiner_trained = false;
  for (const auto& t : s.traffic_rows) {
    const bool big = t.bytes > 32 * t.messages + 64;  // carries a model
    if (joiners.count(t.src) && big) {
      EXPECT_GT(t.round, join_round) << "joiner " << t.src << " sent a model before joining";
      joiner_trained = true;
    }
    if (leavers.count(t.src)) {
      EXPECT_LE(t.round, leave_round + 1) << "leaver " << t.src << " still talking";
    }
  }
  EXPECT_TRUE(joiner_trained) << "no joiner was ever sampled";
  EXPECT_THROW(plan(modest({"protocol.crash.fraction=0.6", "protocol.join.fraction=0.5"})), ConfigError);
}


// ---------------------------------------------------------------- compressed FedAvg

TEST(CompressedFedAvg, UplinkBytesFollowTheOperatorsFormula) {
  // 12 clients, half per round, 12 rounds: 6 models down (full) and 6 scaled-sign updates up.
  const std::int64_t d = 60 * 10 + 10;
  const MemorySink s = run({"protocol.kind=fedavg", "topology.kind=star", "sampling.fraction=0.5", "eval={every: 3}",
                            "compressor.kind=sign", "compressor.feedback=ef"});
  const double down = 32 + 4.0 * d, up = 32 + 4 + static_cast<double>((d + 7) / 8);
  EXPECT_EQ(s.last("bytes_total"), 12 * 6 * (down + up));
  EXPECT_GT(s.last("test_accuracy"), 0.3);
  // Both directions compressed.
  const MemorySink both = run({"protocol.kind=fedavg", "topology.kind=star", "sampling.fraction=0.5", "eval={every: 3}",
                               "compressor.kind=qsgd", "downlink_compressor.kind=bf16"});
  const double qsgd_up = 32 + 4.0 * 2 + static_cast<double>((d * 4 + 7) / 8);  // 2 buckets of 512, 4-bit codes
  EXPECT_EQ(both.last("bytes_total"), 12 * 6 * ((32 + 2.0 * d) + qsgd_up));
}

TEST(CompressedFedAvg, GossipAndModestRefuseLossySparsifiers) {
  for (const auto& kind : {gossip(), modest()}) {
    auto o = kind;
    o.push_back("compressor.kind=topk");
    try {
      plan(o);
      FAIL() << "topk on " << o[0];
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key_path(), "compressor.kind");
      EXPECT_NE(std::string(e.what()).find("supported for dpsgd"), std::string::npos) << e.what();
    }
    o.back() = "compressor.kind=bf16";
    EXPECT_NO_THROW(plan(o));
  }
}


// ---------------------------------------------------------------- compressed D-PSGD (CHOCO)

// The key path of the ConfigError that building `overrides` throws, "" if none.
std::string refused_key(const std::vector<std::string>& overrides) {
  try {
    plan(overrides);
  } catch (const ConfigError& e) {
    return e.key_path();
  }
  return "";
}

// Every evaluated metric of `got` within `rel` (relative) of `want`'s; bytes may differ.
void expect_same_learning(const MemorySink& want, const MemorySink& got, double rel) {
  for (const char* name : {"test_loss", "train_loss", "test_accuracy", "node_accuracy_mean", "consensus_distance"}) {
    const auto a = series(want, name), b = series(got, name);
    ASSERT_EQ(a.size(), b.size()) << name;
    ASSERT_FALSE(a.empty()) << name;
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], rel * std::abs(a[i]) + 1e-12) << name << " #" << i;
  }
}

TEST(Choco, UncompressedWithConsensusLrOneIsPlainDpsgd) {
  expect_identical(run(), run({"protocol.consensus_lr=1"}));
  // topk keeping every coordinate is lossless but runs CHOCO's public copies: the same learning up
  // to rounding, as x̂ + (x - x̂) need not round to x. From a shared start and from x̂ = 0.
  expect_same_learning(run(), run({"compressor.kind=topk", "compressor.ratio=1", "protocol.consensus_lr=1"}), 1e-5);
  const std::vector<std::string> own = {"protocol.independent_init=true", "protocol.gossip_steps=2", "model.kind=mlp",
                                        "model.hidden=[16]"};
  auto choco = own;
  choco.insert(choco.end(), {"compressor.kind=topk", "compressor.ratio=1", "protocol.consensus_lr=1"});
  expect_same_learning(run(own), run(choco), 1e-5);
}

TEST(Choco, TopkTenPercentLearnsOnAFractionOfTheBytes) {
  const std::vector<std::string> longer = {"rounds=40", "eval.every=10"};
  auto topk = longer;
  topk.insert(topk.end(), {"compressor.kind=topk", "compressor.ratio=0.1", "protocol.consensus_lr=0.7"});
  const MemorySink plain = run(longer), compressed = run(topk);
  EXPECT_GT(compressed.last("test_accuracy"), plain.last("test_accuracy") - 0.04);  // 0.712 vs 0.736
  // 40 rounds x 12 nodes x 2 neighbours, each a header and at most 4 + 4k + 1 + ceil(d/8) bytes of
  // topk (61 of 610 values, the cheaper of varint and bitmap indices), at least its values.
  const double messages = 40 * 12 * 2, k = 61;
  EXPECT_EQ(plain.last("bytes_total"), messages * kModelBytes);
  EXPECT_LE(compressed.last("bytes_total"), messages * (32 + 4 + 4 * k + 1 + (610 + 7) / 8));
  EXPECT_GE(compressed.last("bytes_total"), messages * (32 + 4 + 4 * k + 1));
  std::int64_t traffic = 0;
  for (const auto& t : compressed.traffic_rows) traffic += t.bytes;
  EXPECT_EQ(static_cast<double>(traffic), compressed.last("bytes_total"));
}

TEST(Choco, CompressedGossipAloneAveragesTheInitialModels) {
  // No learning to speak of (lr 1e-30 moves no weight), nodes start apart: gossip alone must keep
  // the mean of the models (W is doubly stochastic, the update antisymmetric) and shrink the spread.
  const std::vector<std::string> base = {"model.kind=mlp", "model.hidden=[16]", "protocol.independent_init=true",
                                         "train.lr=1e-30", "protocol.local_steps=1", "protocol.gossip_steps=20",
                                         "rounds=12", "eval.every=1"};
  auto p = plan(base);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(p->model->num_params());
  for (NodeId i = 0; i < 12; ++i) {
    Rng init(3, i, Purpose::kModelInit);
    mean += p->model->init(init).cast<double>();
  }
  const double want = evaluate(*p->model, (mean / 12).cast<float>(), p->data->test).loss;
  for (const auto& codec : std::vector<std::vector<std::string>>{
           {"compressor.kind=topk", "compressor.ratio=0.1", "protocol.consensus_lr=0.3"},
           // CHOCO needs a contraction, E|C(v) - v|^2 < |v|^2: qsgd's variance is below 0.13 |v|^2 at
           // 63 levels, but above |v|^2 at the default 7, where the copies drift off and blow up.
           {"compressor.kind=qsgd", "compressor.levels=63", "protocol.consensus_lr=0.5"}}) {
    auto o = base;
    o.insert(o.end(), codec.begin(), codec.end());
    const MemorySink s = run(o);
    for (double loss : series(s, "test_loss")) EXPECT_NEAR(loss, want, 1e-5 * want) << codec[0];
    const auto spread = series(s, "consensus_distance");
    EXPECT_LT(spread.back(), 1e-3 * spread.front()) << codec[0];
  }
}

TEST(Choco, ConfigErrors) {
  const std::vector<std::string> topk = {"compressor.kind=topk", "compressor.ratio=0.1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), topk.begin(), topk.end());
    return more;
  };
  try {
    plan(topk);
    FAIL() << "a lossy codec needs a consensus step size";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "protocol.consensus_lr");
    EXPECT_NE(std::string(e.what()).find("is required"), std::string::npos) << e.what();
  }
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=0"})), "protocol.consensus_lr");
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=1.5"})), "protocol.consensus_lr");
  EXPECT_EQ(refused_key({"protocol.consensus_lr=0"}), "protocol.consensus_lr");  // uncompressed too
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=0.5", "compressor.feedback=ef"})), "compressor.feedback");
  // Public copies need fixed neighbours.
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=0.5", "topology.kind=one_peer_exponential"})), "topology.kind");
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=0.5", "protocol.merge.r_start=1"})), "protocol.merge");
  EXPECT_EQ(refused_key(with({"protocol.consensus_lr=0.5"})), "");
  EXPECT_EQ(refused_key({"compressor.kind=bf16", "protocol.consensus_lr=1"}), "");
}

// ---------------------------------------------------------------- Byzantine robustness (MoNNA, card 6.1)

TEST(DpsgdRobust, MeanAndNnaWithoutFOnACompleteGraphAreUniformMixing) {
  const std::vector<std::string> complete = {"topology.kind=complete"};
  const MemorySink mix = run(complete);
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), complete.begin(), complete.end());
    return run(more);
  };
  // W = 1/n on a complete graph; robust `mean` weighs by W_ij, NNA with f = 0 keeps every model.
  for (const MemorySink& other : {with({"protocol.aggregation=robust", "aggregator.kind=mean"}),
                                  with({"protocol.aggregation=nna", "protocol.f=0"})}) {
    const auto a = series(mix, "test_loss"), b = series(other, "test_loss");
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);  // sums in float vs double
    EXPECT_EQ(mix.last("bytes_total"), other.last("bytes_total"));
  }
}

// 26 nodes on a complete graph, 5 of them (round(0.2 * 26)) Byzantine. IID data: on the natural
// (heterogeneous) split NNA with f = 5 drops the 5 most different honest models even without
// attackers, and the nodes settle in clusters (node accuracy 0.43 instead of mixing's 0.72).
std::vector<std::string> byzantine(std::vector<std::string> more) {
  std::vector<std::string> o = {"data.clients=26", "topology.kind=complete", "rounds=15", "eval.nodes=26",
                                "eval.every=5", "attack.fraction=0.2", "data.partition.kind=iid"};
  o.insert(o.end(), more.begin(), more.end());
  return o;
}

TEST(DpsgdRobust, SignFlipBreaksMixingButNotNna) {
  auto accuracy = [](std::vector<std::string> o) { return run(byzantine(std::move(o))).last("node_accuracy_mean"); };
  const std::vector<std::string> nna = {"protocol.aggregation=nna", "protocol.f=5"};
  const double clean = accuracy({});
  EXPECT_GT(clean, 0.7);
  // 5 of 26 sending -x shrink every mix to (21 - 5) / 26 of the honest mean; -4x to about 0.
  EXPECT_LT(accuracy({"attack.kind=sign_flip"}), clean - 0.08);
  EXPECT_LT(accuracy({"attack.kind=sign_flip", "attack.scale=4"}), 0.3);
  // NNA around the node's own model leaves the 5 far-away vectors out.
  EXPECT_GT(accuracy({"attack.kind=sign_flip", nna[0], nna[1]}), clean - 0.03);
  EXPECT_GT(accuracy({"attack.kind=sign_flip", "attack.scale=4", nna[0], nna[1]}), clean - 0.03);
  EXPECT_GT(accuracy({"attack.kind=sign_flip", nna[0], nna[1], "protocol.momentum=0.5"}), clean - 0.05);
}

TEST(DpsgdRobust, AttackersAreRecordedAndCountInNoMetric) {
  // Without gossip no attack reaches anyone, and label_flip only poisons the attackers' own data:
  // if the metrics are the honest nodes', they are the same bits as under sign_flip.
  const MemorySink flipped = run(byzantine({"attack.kind=label_flip", "protocol.gossip_steps=0"}));
  const MemorySink signs = run(byzantine({"attack.kind=sign_flip", "protocol.gossip_steps=0"}));
  for (const char* name : {"test_accuracy", "node_accuracy_mean", "train_loss", "consensus_distance"})
    EXPECT_EQ(series(flipped, name), series(signs, name)) << name;
  std::vector<NodeId> recorded;
  for (const auto& m : flipped.metrics)
    if (m.name == "byzantine") recorded.push_back(m.node);
  std::vector<NodeId> expected;
  for (int c : choose_attackers(0.2, 26, 3)) expected.push_back(c);  // node c holds client c
  EXPECT_EQ(recorded, expected);
  EXPECT_EQ(recorded.size(), 5u);
}

TEST(DpsgdRobust, ConfigErrors) {
  EXPECT_EQ(refused_key({"protocol.aggregation=krum"}), "protocol.aggregation");
  EXPECT_EQ(refused_key({"aggregator.kind=median"}), "aggregator.kind");  // unused without robust
  EXPECT_EQ(refused_key({"protocol.f=1"}), "protocol.f");                 // nna's key
  EXPECT_EQ(refused_key({"protocol.aggregation=nna", "protocol.f=3"}), "protocol.f");  // a ring node hears 2
  EXPECT_EQ(refused_key({"protocol.aggregation=nna", "protocol.f=2"}), "");
  EXPECT_EQ(refused_key({"protocol.momentum=1"}), "protocol.momentum");
  EXPECT_EQ(refused_key({"protocol.aggregation=nna", "protocol.variance_correction=true"}),
            "protocol.variance_correction");
  const std::vector<std::string> topk = {"compressor.kind=topk", "compressor.ratio=0.1", "protocol.consensus_lr=0.5"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), topk.begin(), topk.end());
    return more;
  };
  EXPECT_EQ(refused_key(with({"protocol.aggregation=robust", "aggregator.kind=median"})), "protocol.aggregation");
  EXPECT_EQ(refused_key(with({"attack.kind=sign_flip"})), "attack.kind");
  EXPECT_EQ(refused_key({"attack.kind=sign_flip", "protocol.aggregation=robust", "aggregator.kind=median"}), "");
}


// The round observer's metrics do not depend on the order reports arrive in (deployed, they come
// from many processes): it sums them in node order. It refuses a node seen twice or a model of the
// wrong size, and a relaying probe records nothing itself.
TEST(RoundObserver, SameValuesBitForBitWhateverTheReportOrder) {
  const int n = 12;
  const auto models = [&] {
    std::vector<Vector> out;
    Rng rng(5, kNoNode, Purpose::kEvaluation);
    const auto d = plan()->task->model->num_params();
    for (int i = 0; i < n; ++i) {
      Vector v(d);
      for (auto& x : v) x = static_cast<float>(rng.normal() * std::pow(10.0, i % 5 - 2));  // magnitudes 0.01-100
      out.push_back(std::move(v));
    }
    return out;
  }();
  const auto observed = [&](std::vector<NodeId> order) {
    auto p = plan();
    test::HandContext ctx(1);
    for (int round : {1, 2, 3})
      for (NodeId i : order) p->nodes.probe->observe(ctx, Observation{round, i, models[i], {0.1 * i + 1.0 / 3.0}});
    EXPECT_EQ(ctx.finished, (std::vector<int>{1, 2, 3}));
    return ctx.sink;
  };
  std::vector<NodeId> order(n);
  std::iota(order.begin(), order.end(), 0);
  const MemorySink in_order = observed(order);
  std::reverse(order.begin(), order.end());
  expect_identical(in_order, observed(order));
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  expect_identical(in_order, observed(order));
  EXPECT_EQ(series(in_order, "test_accuracy").size(), 1u);  // eval every 3 rounds
  EXPECT_EQ(series(in_order, "consensus_distance").size(), 3u);

  auto p = plan();
  test::HandContext ctx(1);
  p->nodes.probe->observe(ctx, Observation{1, 4, models[4], {0.0}});
  EXPECT_THROW(p->nodes.probe->observe(ctx, Observation{1, 4, models[4], {0.0}}), Error);
  EXPECT_THROW(p->nodes.probe->observe(ctx, Observation{1, 5, Vector::Zero(3), {0.0}}), Error);
  EXPECT_THROW(p->nodes.probe->observe(ctx, Observation{13, 5, models[5], {0.0}}), Error);
  for (NodeId i = 0; i < n; ++i)
    if (i != 4) p->nodes.probe->observe(ctx, Observation{1, i, models[i], {0.0}});
  EXPECT_EQ(ctx.finished, std::vector<int>{1});
  EXPECT_THROW(p->nodes.probe->observe(ctx, Observation{1, 4, models[4], {0.0}}), Error);  // round 1 is recorded
  std::vector<NodeId> relayed;
  test::HandContext node_process(1);
  p->nodes.probe->relay_to([&](Observation&& o) { relayed.push_back(o.node); });
  for (NodeId i = 0; i < n; ++i) p->nodes.probe->observe(node_process, Observation{2, i, models[i], {0.0}});
  EXPECT_EQ(relayed.size(), static_cast<std::size_t>(n));
  EXPECT_TRUE(node_process.sink.metrics.empty());
  EXPECT_TRUE(node_process.finished.empty());
}

}  // namespace
}  // namespace starling
