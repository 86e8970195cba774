// Byzantine settings beyond FedAvg: MoNNA's wait-for-(n - f) gossip (card 6.1) and the attacks on
// the asynchronous servers, gossip learning and MoDeST.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "aggregators/robust.h"
#include "compressors/compressor.h"
#include "config/experiment.h"
#include "nodes/attack.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

void expect_identical(const MemorySink& one, const MemorySink& two) { test::expect_identical_runs(one, two); }

std::vector<NodeId> byzantine_rows(const MemorySink& s) {
  std::vector<NodeId> out;
  for (const auto& m : s.metrics)
    if (m.name == "byzantine") {
      EXPECT_EQ(m.round, 0);
      out.push_back(m.node);
    }
  return out;
}

std::string refused_key(const std::string& yaml, const std::vector<std::string>& overrides) {
  try {
    test::plan_from(yaml, overrides);
  } catch (const ConfigError& e) {
    return e.key_path();
  }
  return "";
}

// ---------------------------------------------------------------- wait_for: n_minus_f

const std::string kMonna = R"yaml(
seed: 3
rounds: 12
data: { dataset: synthetic, clients: 10, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32 }
protocol: { kind: dpsgd, aggregation: nna, f: 2, local_steps: 2 }
topology: { kind: complete }
eval: { every: 4, nodes: 10 }
)yaml";

MemorySink run_monna(const std::vector<std::string>& overrides, int threads = 1) {
  return test::run_plan(*test::plan_from(kMonna, overrides), threads);
}

TEST(MonnaWait, AllIsTheDefaultAndNMinusFWithoutFWaitsForAll) {
  const MemorySink base = run_monna({"protocol.f=0", "compute.kind=lognormal"});
  expect_identical(base, run_monna({"protocol.f=0", "compute.kind=lognormal", "protocol.wait_for=all"}));
  // f = 0: the quorum n - f is every node, so the same models are mixed in the same order.
  expect_identical(base, run_monna({"protocol.f=0", "compute.kind=lognormal", "protocol.wait_for=n_minus_f"}));
}

TEST(MonnaWait, IdenticalMetricsForOneAndTwoThreadsUnderAttack) {
  const std::vector<std::string> o = {"protocol.wait_for=n_minus_f", "compute.kind=lognormal", "compute.sigma=1",
                                      "attack.kind=alie", "attack.fraction=0.2"};
  expect_identical(run_monna(o, 1), run_monna(o, 2));
}

TEST(MonnaWait, NnaHoldsAgainstSignFlipWithoutWaitingForEverybody) {
  // 2 of 10 nodes send -4x; with uneven speeds the honest nodes mix the first 8 models they hold
  // (the 2 Byzantine ones among them) and average the 6 closest to their own.
  const std::vector<std::string> o = {"protocol.wait_for=n_minus_f", "compute.kind=lognormal", "compute.sigma=1",
                                      "attack.fraction=0.2"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), o.begin(), o.end());
    return run_monna(more).last("node_accuracy_mean");
  };
  const double clean = with({"attack.kind=none"});
  EXPECT_GT(clean, 0.6);
  EXPECT_GT(with({"attack.kind=sign_flip", "attack.scale=4"}), clean - 0.05);
  EXPECT_LT(with({"attack.kind=sign_flip", "attack.scale=4", "protocol.f=0"}), clean - 0.2);  // NNA keeps all
}

TEST(MonnaWait, ConfigErrors) {
  EXPECT_EQ(refused_key(kMonna, {"protocol.wait_for=some"}), "protocol.wait_for");
  EXPECT_EQ(refused_key(kMonna, {"protocol.wait_for=n_minus_f", "protocol.aggregation=mix"}), "protocol.wait_for");
  EXPECT_EQ(refused_key(kMonna, {"protocol.wait_for=n_minus_f", "topology.kind=one_peer_exponential"}),
            "protocol.wait_for");
  // 10 nodes: each hears 9 others; n - f = 10 - 5 leaves n - 2f = 0 to average.
  EXPECT_EQ(refused_key(kMonna, {"protocol.wait_for=n_minus_f", "protocol.f=5"}), "protocol.f");
  EXPECT_EQ(refused_key(kMonna, {"protocol.wait_for=n_minus_f", "protocol.f=4"}), "");
}

// Node 0 of 5 on a complete graph with f = 1 (quorum 4 of 5): it is fed round 1's models from
// `order` (sender, its model = x0 + ((5 - sender) / 10) e_sender: node 4's is the closest to
// x0, node 1's the farthest); returns how many computes (trainings)
// had started after each message, and checks the model it mixed. The learning rate is so small
// that round 2's training leaves the mixed model as it is, so its next broadcast shows it.
struct HandRun {
  std::vector<int> computes_after;
  Vector mixed, expected;
};
HandRun drive(std::uint64_t seed, const std::string& attack, const std::vector<NodeId>& order) {
  auto plan = test::plan_from(kMonna, {"seed=" + std::to_string(seed), "data.clients=5", "protocol.f=1",
                                       "protocol.wait_for=n_minus_f", "train.lr=1e-30", "attack.fraction=0.2",
                                       "attack.kind=" + attack});
  Node& node = *plan->nodes.nodes[0];
  test::HandContext ctx(seed);
  node.on_start(ctx);
  node.on_compute_done(ctx, 1);  // round 1 trained: broadcast step 1 to the 4 others
  EXPECT_EQ(ctx.sent.size(), 4u);
  YAML::Node none = YAML::Load("{kind: none}");
  Section section(none);
  auto codec = make_compressor(section);
  const std::int64_t d = 60 * 10 + 10;
  const Vector x0 = codec->decode(*ctx.sent.front().payload, d);
  std::map<NodeId, Vector> models;
  HandRun out;
  for (NodeId j : order) {
    Vector v = x0;
    v[j] += static_cast<float>(5 - j) / 10.0f;
    Message m;
    m.kind = MessageKind::kGossip;
    m.round = 1;
    m.step = 1;
    m.sender = j;
    m.receiver = 0;
    Rng rng(1, j, Purpose::kTest);
    m.set_payload(codec->encode(v, rng));
    models.emplace(j, std::move(v));
    node.on_message(ctx, std::move(m));  // a late one is dropped, no error
    out.computes_after.push_back(ctx.computes);
  }
  node.on_compute_done(ctx, 2);
  out.mixed = codec->decode(*ctx.sent.back().payload, d);
  // What node 0 should have mixed: itself and the first-heard quorum, attackers' vectors corrupted.
  const auto attackers = choose_attackers(0.2, 5, seed);
  const bool attacked = attack != "none";
  std::vector<NodeId> used;
  int honest = 0;
  for (NodeId j : order) {
    const bool byzantine = attacked && std::count(attackers.begin(), attackers.end(), j);
    if (byzantine || honest < (attacked ? 2 : 3)) used.push_back(j), honest += !byzantine;
  }
  std::sort(used.begin(), used.end());
  std::vector<Vector> kept = {x0};
  for (NodeId j : used) kept.push_back(attacked && std::count(attackers.begin(), attackers.end(), j) ? -models.at(j) : models.at(j));
  std::vector<const Vector*> views;
  for (const auto& v : kept) views.push_back(&v);
  out.expected = nearest_average(x0, views, views.size() - 1);
  return out;
}

TEST(MonnaWait, MixesTheFirstNMinusFAndDropsTheSlowNodesModel) {
  // Node 4 is slow: its model comes last, after node 0 already mixed 3, 1, 2 and itself.
  const HandRun r = drive(3, "none", {3, 1, 2, 4});
  EXPECT_EQ(r.computes_after, (std::vector<int>{1, 1, 2, 2}));  // mixed (and trained round 2) on the third
  EXPECT_LT((r.mixed - r.expected).norm(), 1e-5);
  // Node 4's model is the one closest to node 0's own, so taking it would have changed the mix.
  const HandRun other = drive(3, "none", {4, 1, 2, 3});
  EXPECT_GT((other.mixed - r.mixed).norm(), 1e-3);
  EXPECT_LT((other.mixed - other.expected).norm(), 1e-5);
}

TEST(MonnaWait, TheByzantineModelsAreAlwaysInTheQuorum) {
  std::uint64_t seed = 1;  // one where node 0 is honest
  while (choose_attackers(0.2, 5, seed).front() == 0) ++seed;
  const NodeId byzantine = choose_attackers(0.2, 5, seed).front();
  std::vector<NodeId> order;
  for (NodeId j = 1; j < 5; ++j)
    if (j != byzantine) order.push_back(j);
  order.insert(order.begin() + 2, byzantine);  // two honest, the attacker, the last honest one
  const HandRun r = drive(seed, "sign_flip", order);
  // Quorum 4 = itself + the attacker + the first 2 honest: it waits for the attacker, then mixes.
  EXPECT_EQ(r.computes_after, (std::vector<int>{1, 1, 2, 2}));
  EXPECT_LT((r.mixed - r.expected).norm(), 1e-5);
}

// ---------------------------------------------------------------- attacks on more protocols

const std::string kSynthetic = R"yaml(
seed: 7
rounds: 30
data: { dataset: synthetic, clients: 20, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32 }
)yaml";

MemorySink run(const std::vector<std::string>& overrides, int threads = 1) {
  return test::run_plan(*test::plan_from(kSynthetic, overrides), threads);
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::vector<std::string> kSignFlip = {"attack.kind=sign_flip", "attack.fraction=0.2", "attack.scale=6"};

// The buffered asynchronous servers: 4 of 20 clients send -6 x their update. The mean of a buffer
// with about 2 attackers in 10 steps about (8 - 12) / 10 of the honest step, backwards; the
// median holds.
void expect_mean_hurt_median_holds(const std::vector<std::string>& protocol) {
  const double clean = run(protocol).last("test_accuracy");
  const double mean = run(plus(protocol, kSignFlip)).last("test_accuracy");
  const double median = run(plus(plus(protocol, kSignFlip), {"aggregator.kind=median"})).last("test_accuracy");
  EXPECT_GT(clean, 0.7);
  EXPECT_LT(mean, clean - 0.25);
  EXPECT_GT(median, clean - 0.1);
}

const std::vector<std::string> kFedBuff = {"protocol={kind: fedbuff, concurrency: 10, buffer: 10, local_steps: 5}",
                                           "rounds=40", "compute.kind=lognormal"};
const std::vector<std::string> kFedFix = {"protocol={kind: fedfix, concurrency: 10, period_s: 1, local_steps: 5}",
                                          "rounds=40", "compute.kind=lognormal"};
const std::vector<std::string> kAfa = {"protocol={kind: afa, concurrency: 10, buffer: 10, min_steps: 1, max_steps: 8}",
                                       "rounds=40", "compute.kind=lognormal"};
const std::vector<std::string> kAfaCs = {"protocol={kind: afa, variant: cs, concurrency: 10, buffer: 10}", "rounds=40",
                                         "compute.kind=lognormal"};
const std::vector<std::string> kFedAsync = {"protocol={kind: fedasync, concurrency: 10, local_steps: 5}", "rounds=200",
                                            "compute.kind=lognormal", "eval.every=50"};
const std::vector<std::string> kGossip = {"protocol={kind: gossip, local_steps: 5}", "topology.kind=random_regular",
                                          "eval.every=10"};
const std::vector<std::string> kModest = {"protocol={kind: modest, sample: 10, local_steps: 5}"};

TEST(AsyncAttack, FedBuffMeanIsHurtMedianHolds) { expect_mean_hurt_median_holds(kFedBuff); }
TEST(AsyncAttack, FedFixMeanIsHurtMedianHolds) { expect_mean_hurt_median_holds(kFedFix); }
TEST(AsyncAttack, AfaMeanIsHurtMedianHolds) { expect_mean_hurt_median_holds(kAfa); }
TEST(AsyncAttack, AfaCsMeanIsHurtMedianHolds) { expect_mean_hurt_median_holds(kAfaCs); }

// The protocols without an aggregator: the attack must hurt (and the clean run learn).
void expect_hurt(const std::vector<std::string>& protocol, double margin) {
  const double clean = run(protocol).last("test_accuracy");
  const double attacked = run(plus(protocol, kSignFlip)).last("test_accuracy");
  EXPECT_GT(clean, 0.7);
  EXPECT_LT(attacked, clean - margin);
}

TEST(AsyncAttack, FedAsyncSignFlipHurts) { expect_hurt(kFedAsync, 0.2); }
TEST(DecentralizedAttack, GossipSignFlipHurts) { expect_hurt(kGossip, 0.2); }
TEST(DecentralizedAttack, ModestSignFlipHurts) { expect_hurt(kModest, 0.2); }

TEST(Attack, ByzantineRowsAndDeterminismOnEveryNewProtocol) {
  std::vector<NodeId> clients, nodes;  // attackers as node ids: server-based c + 1, decentralized c
  for (int c : choose_attackers(0.2, 20, 7)) clients.push_back(c + 1), nodes.push_back(c);
  for (const auto& [protocol, server] : std::vector<std::pair<std::vector<std::string>, bool>>{
           {kFedBuff, true}, {kFedFix, true}, {kAfaCs, true}, {kFedAsync, true}, {kGossip, false}, {kModest, false}}) {
    for (const char* kind : {"alie", "gaussian"}) {
      const auto o = plus(protocol, {std::string("attack.kind=") + kind, "attack.fraction=0.2", "rounds=8", "eval.every=4"});
      const MemorySink one = run(o, 1);
      expect_identical(one, run(o, 2));
      EXPECT_EQ(byzantine_rows(one), server ? clients : nodes) << protocol.front();
      EXPECT_GT(one.last("test_accuracy"), 0.0) << protocol.front() << " " << kind;
    }
  }
}

TEST(Attack, ConfigRefusesProtocolsWithoutAnAttackModel) {
  EXPECT_EQ(refused_key(kSynthetic, {"protocol.kind=scaffold", "attack.kind=sign_flip"}), "attack.kind");
  EXPECT_EQ(refused_key(kSynthetic, {"protocol.kind=zo_shared", "attack.kind=alie"}), "attack.kind");
  EXPECT_EQ(refused_key(kSynthetic, {"protocol.kind=zo_shared", "attack.kind=none"}), "");
  for (const char* p : {"fedbuff", "fedasync", "fedfix", "afa", "gossip", "modest"})
    EXPECT_EQ(refused_key(kSynthetic, {std::string("protocol.kind=") + p, "attack.kind=ipm"}), "") << p;
}

// ---------------------------------------------------------------- the shared corruption

TEST(AttackFunctions, ABufferMayHoldAnAttackerTwiceEachWithItsOwnNoise) {
  AttackParams p;
  p.kind = AttackKind::kGaussian;
  Attack attack(p, {2}, 7);
  Vector a = Vector::Ones(6), b = Vector::Ones(6), honest = Vector::Ones(6);
  attack.corrupt(std::uint64_t{3}, Attack::Updates{{2, &a}, {1, &honest}, {2, &b}});
  EXPECT_EQ(honest, Vector::Ones(6));
  EXPECT_NE(a, b);
  // The first occurrence draws exactly what the one-per-sender form (FedAvg, D-PSGD) draws.
  Vector c = Vector::Ones(6), h = Vector::Ones(6);
  std::map<NodeId, Vector*> once{{1, &h}, {2, &c}};
  attack.corrupt(3, once);
  EXPECT_EQ(a, c);
}

}  // namespace
}  // namespace starling
