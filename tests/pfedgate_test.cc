// pFedGate (card 1) and personalized evaluation: the knapsack, the gate's gradients (finite
// differences), the block encoding, local test splits, what travels in messages, personalized
// accuracy against a direct computation, budgets and cost, config errors, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "config/experiment.h"
#include "learning/gating.h"
#include "learning/partition.h"
#include "nodes/personalized.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

// ---------------------------------------------------------------- knapsack

TEST(PFedGateKnapsack, RespectsEveryBudgetAndKeepsFirstSubBlocks) {
  const Mlp model(20, {7}, 3);  // tensors 140, 7, 21, 3 (the last: one block per entry)
  const BlockGating gating(model, 5, 20);
  const auto& blocks = gating.blocks();
  ASSERT_EQ(gating.num_blocks(), 5 + 4 + 5 + 3);
  std::int64_t total = 0;
  for (const auto& b : blocks) total += b.size;
  ASSERT_EQ(total, model.num_params());
  Rng rng(1, kNoNode, Purpose::kTest);
  std::vector<std::uint8_t> keep;
  for (int trial = 0; trial < 2000; ++trial) {
    const double budget = trial % 10 == 0 ? 1.0 : 0.05 + 0.95 * rng.uniform();
    std::vector<float> g(blocks.size());
    for (auto& v : g) v = static_cast<float>(trial % 3 == 0 ? rng.uniform() : 0.4 + 0.2 * rng.uniform());
    const std::int64_t kept = gating.select(g, budget, keep);
    std::int64_t sum = 0, items = 0, taken = 0;
    for (std::size_t j = 0; j < blocks.size(); ++j) {
      if (blocks[j].first) {
        EXPECT_EQ(keep[j], 1) << "first sub-block " << j << " dropped at s=" << budget;
      }
      if (keep[j]) sum += blocks[j].size;
      if (!blocks[j].first) items += blocks[j].size, taken += keep[j] ? blocks[j].size : 0;
    }
    EXPECT_EQ(kept, sum);
    EXPECT_LE(kept, gating.max_kept(budget));
    if (budget >= 1.0) {
      EXPECT_EQ(kept, model.num_params());
      continue;
    }
    const double s_min = gating.min_fraction(budget);
    const auto capacity = static_cast<std::int64_t>(std::llround((budget - s_min) * static_cast<double>(items)));
    EXPECT_LE(taken, capacity) << "s=" << budget;
    // Greedy: a dropped item no longer fit, and every item of higher value than the first dropped
    // one was taken.
    int first_dropped_value = -1;
    for (std::size_t j = 0; j < blocks.size(); ++j)
      if (!blocks[j].first && !keep[j]) {
        EXPECT_GT(blocks[j].size, capacity - taken);
        const int v = static_cast<int>(std::lround(10.0 * std::max<double>(g[j], s_min)));
        first_dropped_value = std::max(first_dropped_value, v);
      }
    for (std::size_t j = 0; j < blocks.size(); ++j)
      if (!blocks[j].first && std::lround(10.0 * std::max<double>(g[j], s_min)) > first_dropped_value) {
        EXPECT_EQ(keep[j], 1);
      }
  }
}

TEST(PFedGateKnapsack, BlockSplitFollowsTheReferenceRule) {
  // ceil(numel / B) entries per sub-block, the last shorter; numel < B: one block per entry.
  const Mlp model(4, {}, 3);  // W 12 -> 3,3,3,3 (ceil(12/5) = 3, 4 blocks); b 3 -> 1,1,1
  const BlockGating gating(model, 5, 4);
  std::vector<std::int64_t> sizes;
  for (const auto& b : gating.blocks()) sizes.push_back(b.size);
  EXPECT_EQ(sizes, (std::vector<std::int64_t>{3, 3, 3, 3, 1, 1, 1}));
  EXPECT_TRUE(gating.blocks()[0].first && gating.blocks()[4].first && !gating.blocks()[5].first);
}

// ---------------------------------------------------------------- gradients

struct Tiny {
  Mlp model{6, {5}, 3};
  Dataset data;
  BlockGating gating{model, 5, 6};
  Gate gate;
  Vector theta;
  Matrix x;
  std::vector<std::int32_t> y;

  explicit Tiny(int batch = 7) {
    Rng rng(2, kNoNode, Purpose::kTest);
    data.x.resize(6, 40);
    for (Eigen::Index i = 0; i < data.x.size(); ++i) data.x.data()[i] = static_cast<float>(rng.normal());
    for (int i = 0; i < 40; ++i) data.y.push_back(static_cast<std::int32_t>(rng.below(3)));
    data.num_classes = 3;
    std::vector<std::int32_t> all(40);
    for (int i = 0; i < 40; ++i) all[static_cast<std::size_t>(i)] = i;
    gate = make_gate(gating, data, all, rng);
    // Spread the scores so that the knapsack has something to choose.
    for (Eigen::Index i = 0; i < gate.params.size(); ++i) gate.params[i] += static_cast<float>(0.5 * rng.normal());
    theta = model.init(rng);
    std::vector<std::int32_t> members(all.begin(), all.begin() + batch);
    data.gather(members, x);
    y.assign(data.y.begin(), data.y.begin() + batch);
  }
};

// Central differences of f along coordinate i of v (in double around a float vector).
template <typename F>
double central(Vector& v, Eigen::Index i, double h, F f) {
  const float keep = v[i];
  v[i] = static_cast<float>(keep + h);
  const double up = f();
  v[i] = static_cast<float>(keep - h);
  const double down = f();
  v[i] = keep;
  return (up - down) / (2 * h);
}

// The coordinates of grad[begin, end) with the largest magnitude (the ones a finite difference resolves).
std::vector<Eigen::Index> largest(const Vector& grad, int count, Eigen::Index begin = 0, Eigen::Index end = -1) {
  if (end < 0) end = grad.size();
  std::vector<Eigen::Index> idx;
  for (Eigen::Index i = begin; i < end; ++i) idx.push_back(i);
  count = std::min(count, static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + count, idx.end(),
                    [&](auto a, auto b) { return std::abs(grad[a]) > std::abs(grad[b]); });
  idx.resize(static_cast<std::size_t>(count));
  return idx;
}

// The gate's parameters by part: W (F x L), b, gamma, beta; the largest entries of each part.
std::vector<Eigen::Index> gate_probes(const Vector& grad, const BlockGating& gating) {
  const Eigen::Index F = gating.features(), L = gating.num_blocks();
  std::vector<Eigen::Index> out;
  for (auto [begin, end] : {std::pair{Eigen::Index{0}, F * L}, {F * L, (F + 1) * L}, {(F + 1) * L, (F + 2) * L},
                            {(F + 2) * L, (F + 3) * L}})
    for (auto i : largest(grad, 5, begin, end)) out.push_back(i);
  return out;
}

TEST(PFedGateGradients, BudgetOneMatchesFiniteDifferencesOfTheLoss) {
  // s = 1: theta~ = g . theta per block, a smooth function of the gate and theta, so the analytic
  // gradients must match central differences of the loss itself.
  Tiny t;
  GatedWorkspace ws;
  Vector g_theta, g_gate, scratch_theta, scratch_gate;
  gated_loss_and_gradients(t.model, t.gating, t.gate, 1.0, t.theta, t.x, t.y, g_theta, g_gate, ws);
  auto loss = [&] {
    GatedWorkspace w;
    return gated_loss_and_gradients(t.model, t.gating, t.gate, 1.0, t.theta, t.x, t.y, scratch_theta, scratch_gate, w);
  };
  ASSERT_GT(g_gate.norm(), 1e-4);
  for (auto i : gate_probes(g_gate, t.gating)) {
    const double fd = central(t.gate.params, i, 2e-3, loss);
    EXPECT_NEAR(g_gate[i], fd, 3e-5 + 0.03 * std::abs(fd)) << "gate parameter " << i;
  }
  for (auto i : largest(g_theta, 12)) {
    const double fd = central(t.theta, i, 2e-3, loss);
    EXPECT_NEAR(g_theta[i], fd, 3e-5 + 0.03 * std::abs(fd)) << "theta " << i;
  }
}

TEST(PFedGateGradients, StraightThroughPathMatchesFiniteDifferencesOfTheSurrogate) {
  // s < 1: the mask is a step function of g, so the gradient is that of the straight-through
  // surrogate L(theta . c(phi)), c_j = m_j g_j (1 - g^0_j + max(g_j, s_min)) with the mask m and
  // the stop-gradient g^0 frozen at the current point (where c_j = m_j g_j).
  Tiny t;
  const double budget = 0.5;
  GatedWorkspace ws;
  Vector g_theta, g_gate;
  gated_loss_and_gradients(t.model, t.gating, t.gate, budget, t.theta, t.x, t.y, g_theta, g_gate, ws);
  const GateMask frozen = ws.mask;
  const float s_min = static_cast<float>(t.gating.min_fraction(budget));
  const Eigen::VectorXf g0 = ws.gate.g.cwiseMax(s_min);
  int kept = 0, dropped = 0;
  for (auto k : frozen.keep) (k ? kept : dropped)++;
  ASSERT_GT(dropped, 0) << "the budget should drop some blocks";
  auto surrogate = [&] {
    GateWorkspace gw;
    gate_forward(t.gate, t.x, true, gw);
    Eigen::VectorXf c(gw.g.size());
    for (Eigen::Index j = 0; j < c.size(); ++j)
      c[j] = frozen.keep[static_cast<std::size_t>(j)] ? gw.g[j] * (1.0f - g0[j] + std::max(gw.g[j], s_min)) : 0.0f;
    Vector sparse, grad;
    scale_blocks(t.gating, c, t.theta, sparse);
    Workspace mw;
    return t.model.loss_and_gradient(sparse, t.x, t.y, grad, mw);
  };
  // Gradients reach the gate (W, b, gamma, beta all live), through kept blocks only.
  ASSERT_GT(g_gate.norm(), 1e-4);
  for (auto i : gate_probes(g_gate, t.gating)) {
    const double fd = central(t.gate.params, i, 1e-3, surrogate);
    EXPECT_NEAR(g_gate[i], fd, 3e-5 + 0.03 * std::abs(fd)) << "gate parameter " << i;
  }
  // Dropped blocks get exactly zero gradient; kept ones are scaled by g.
  for (std::size_t j = 0; j < frozen.keep.size(); ++j) {
    const auto& b = t.gating.blocks()[j];
    if (!frozen.keep[j]) {
      EXPECT_TRUE(g_theta.segment(b.offset, b.size).isZero(0.0f)) << "block " << j;
    }
  }
}

TEST(PFedGateGradients, TrainingMovesTheGateAndOnlyUsedBlocks) {
  Tiny t;
  std::vector<std::int32_t> all(40);
  for (int i = 0; i < 40; ++i) all[static_cast<std::size_t>(i)] = i;
  const Vector phi0 = t.gate.params, theta0 = t.theta;
  Sgd sgd(0.1, 0.0, 0.0);
  GatedTraining settings{.budget = 0.3, .gate_lr = 0.1f, .clip = 10.0f, .train_model = true};
  Rng rng(3, kNoNode, Purpose::kTest);
  const GatedStats stats = train_gated(t.model, t.gating, t.gate, settings, sgd, t.data, all, 1, 8, rng, t.theta);
  EXPECT_EQ(stats.train.batches, 5);
  EXPECT_GT((t.gate.params - phi0).norm(), 0.0f);
  std::int64_t used = 0;
  for (std::size_t j = 0; j < stats.used.size(); ++j) {
    const auto& b = t.gating.blocks()[j];
    if (stats.used[j]) used += b.size;
    else EXPECT_TRUE((t.theta - theta0).segment(b.offset, b.size).isZero(0.0f)) << "unused block " << j << " moved";
  }
  EXPECT_EQ(used, stats.used_params);
  EXPECT_LE(stats.kept_sum, 5 * t.gating.max_kept(0.3));
  // Only the gate learns when train_model is false.
  const Vector theta1 = t.theta;
  settings.train_model = false;
  train_gated(t.model, t.gating, t.gate, settings, sgd, t.data, all, 1, 8, rng, t.theta);
  EXPECT_TRUE(t.theta == theta1);
}

TEST(PFedGateEncoding, BlocksRoundTripWithTheirBitmap) {
  Tiny t;
  Rng rng(4, kNoNode, Purpose::kTest);
  Vector v(t.model.num_params());
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rng.normal());
  std::vector<std::uint8_t> used(static_cast<std::size_t>(t.gating.num_blocks()));
  std::int64_t params = 0;
  for (std::size_t j = 0; j < used.size(); ++j)
    if ((used[j] = rng.uniform() < 0.5)) params += t.gating.blocks()[j].size;
  const auto bytes = encode_blocks(t.gating, v, used);
  EXPECT_EQ(static_cast<std::int64_t>(bytes.size()), (t.gating.num_blocks() + 7) / 8 + 4 * params);
  const Vector back = decode_blocks(t.gating, bytes);
  for (std::size_t j = 0; j < used.size(); ++j) {
    const auto& b = t.gating.blocks()[j];
    if (used[j]) EXPECT_TRUE(back.segment(b.offset, b.size) == v.segment(b.offset, b.size));
    else EXPECT_TRUE(back.segment(b.offset, b.size).isZero(0.0f));
  }
  auto bad = bytes;
  bad.pop_back();
  EXPECT_THROW(decode_blocks(t.gating, bad), Error);
}

// ---------------------------------------------------------------- local test split

TEST(LocalSplit, PartitionsEachClientAndHoldsOutNovelClients) {
  Partition p(10);
  for (int c = 0; c < 10; ++c)
    for (int i = 0; i < 3 + 7 * c; ++i) p[static_cast<std::size_t>(c)].push_back(1000 * c + i);
  const LocalSplit s = split_local(p, 0.25, 3, 9);
  ASSERT_EQ(s.novel.size(), 3u);
  ASSERT_EQ(s.train.size(), 7u);
  ASSERT_EQ(s.test.size(), 7u);
  ASSERT_EQ(s.novel_test.size(), 3u);
  std::size_t t = 0, k = 0;
  for (int c = 0; c < 10; ++c) {
    const bool novel = std::binary_search(s.novel.begin(), s.novel.end(), c);
    const auto& train = novel ? s.novel_train[k] : s.train[t];
    const auto& test = novel ? s.novel_test[k] : s.test[t];
    (novel ? k : t)++;
    const auto n = static_cast<std::int64_t>(p[static_cast<std::size_t>(c)].size());
    EXPECT_EQ(static_cast<std::int64_t>(test.size()), std::clamp<std::int64_t>(std::llround(0.25 * n), 1, n - 1));
    std::vector<std::int32_t> both = train;
    both.insert(both.end(), test.begin(), test.end());
    std::sort(both.begin(), both.end());
    EXPECT_EQ(both, p[static_cast<std::size_t>(c)]) << "client " << c;  // disjoint, nothing lost
  }
  // Seeded: the same seed gives the same split, another seed another one.
  EXPECT_EQ(split_local(p, 0.25, 3, 9).test, s.test);
  EXPECT_NE(split_local(p, 0.25, 3, 10).test, s.test);
}

// ---------------------------------------------------------------- runs

const std::string kFedAvg = R"yaml(
seed: 7
rounds: 3
data: { dataset: synthetic, clients: 10, local_test_fraction: 0.3, partition: { kind: natural } }
model: { kind: mlp, hidden: [8] }
train: { lr: 0.05, batch_size: 8 }
protocol: { kind: fedavg, local_steps: 3 }
sampling: { kind: uniform, fraction: 1.0 }
eval: { every: 1 }
)yaml";

const std::string kGate = R"yaml(
seed: 7
rounds: 3
data: { dataset: synthetic, clients: 10, local_test_fraction: 0.3, partition: { kind: natural } }
model: { kind: mlp, hidden: [8] }
train: { lr: 0.05, batch_size: 8 }
protocol: { kind: pfedgate, budget: 0.5, local_steps: 3 }
sampling: { kind: uniform, fraction: 1.0 }
eval: { every: 1 }
)yaml";

std::vector<double> values(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name && m.node == kNoNode) out.push_back(m.value);
  return out;
}

// With server lr 1e-30 every applied step is below the float spacing of the weights, so the
// global model stays bit-identical to its initialisation and can be evaluated from outside.
TEST(PersonalizedEvaluation, FedAvgWithFineTuningEqualsADirectComputation) {
  for (int steps : {0, 4}) {
    auto plan = test::plan_from(kFedAvg, {"server_optimizer.lr=1e-30", "data.novel_clients=2",
                                          "eval.finetune_steps=" + std::to_string(steps)});
    const LearningTask& task = *plan->task;
    ASSERT_EQ(task.partition.size(), 8u);
    ASSERT_EQ(task.novel_test.size(), 2u);
    Rng init_rng(7, kNoNode, Purpose::kModelInit);
    const Vector init = plan->model->init(init_rng);
    auto direct = [&](const Partition& train, const Partition& test, NodeId first_node, int round) {
      std::int64_t correct = 0, n = 0;
      for (std::size_t c = 0; c < test.size(); ++c) {
        Vector params = init;
        if (steps > 0) {
          Rng shuffle = Rng(7, first_node + static_cast<NodeId>(c), Purpose::kLocalTest).substream(round);
          auto opt = task.optimizer->clone();
          train_local(*task.model, *opt, *task.train, train[c], 1 << 30, task.batch_size, shuffle, params, steps);
        }
        for (auto i : test[c]) {
          Matrix x;
          task.train->gather(std::span(&i, 1), x);
          Workspace ws;
          Eigen::Index best;
          task.model->logits(params, x, ws).row(0).maxCoeff(&best);
          correct += best == task.train->y[static_cast<std::size_t>(i)];
          ++n;
        }
      }
      return static_cast<double>(correct) / static_cast<double>(n);
    };
    const MemorySink sink = test::run_plan(*plan);
    const auto own = values(sink, "personalized_accuracy"), novel = values(sink, "novel_accuracy");
    ASSERT_EQ(own.size(), 3u);
    ASSERT_EQ(novel.size(), 3u);
    for (int r = 1; r <= 3; ++r) {
      EXPECT_DOUBLE_EQ(own[static_cast<std::size_t>(r - 1)], direct(task.partition, task.local_test, 1, r)) << steps;
      EXPECT_DOUBLE_EQ(novel[static_cast<std::size_t>(r - 1)], direct(task.novel_train, task.novel_test, 9, r)) << steps;
    }
    if (steps == 0) {
      EXPECT_EQ(own[0], own[2]);  // the global model did not move
    }
  }
}

TEST(PersonalizedEvaluation, PFedGateScoresEachClientsOwnGate) {
  // One round, full participation: client c's gate is its initial gate after train_gated with its
  // own shuffle stream; theta stays the initial model (server lr 1e-30).
  auto plan = test::plan_from(kGate, {"server_optimizer.lr=1e-30", "rounds=1"});
  const LearningTask& task = *plan->task;
  Rng init_rng(7, kNoNode, Purpose::kModelInit);
  const Vector init = plan->model->init(init_rng);
  const BlockGating gating(*task.model, 5, static_cast<int>(task.train->num_features()));
  EvalCounts direct;
  for (std::size_t c = 0; c < task.partition.size(); ++c) {
    const auto node = static_cast<NodeId>(c + 1);
    Rng gate_rng(7, node, Purpose::kGateInit);
    Gate gate = make_gate(gating, *task.train, task.partition[c], gate_rng);
    Rng shuffle(7, node, Purpose::kDataShuffle);
    Vector theta = init;
    Sgd sgd(0.05, 0, 0);
    train_gated(*task.model, gating, gate, {.budget = 0.5, .gate_lr = 0.05f, .clip = 10.0f}, sgd, *task.train,
                task.partition[c], 1 << 30, 8, shuffle, theta, 3);
    direct.add(evaluate_gated(*task.model, gating, gate, 0.5, init, *task.train, task.local_test[c], 8));
  }
  const MemorySink sink = test::run_plan(*plan);
  EXPECT_DOUBLE_EQ(sink.last("personalized_accuracy"), direct.accuracy());
  EXPECT_DOUBLE_EQ(sink.last("personalized_loss"), direct.loss());
}

// Uplink payloads are bitmap + 4 bytes per parameter of a set of whole blocks that contains every
// first sub-block (never a gate: the gate has (F + 3) L parameters); downlink payloads are the
// dense model. Budget 1 keeps every block in every batch: the uplink is then exactly 4d + bitmap.
TEST(PFedGateMessages, CarryModelBlocksOnlyNeverAGate) {
  for (double budget : {0.3, 1.0}) {
    auto plan = test::plan_from(kGate, {"protocol.budget=" + std::to_string(budget)});
    const BlockGating gating(*plan->model, 5, static_cast<int>(plan->task->train->num_features()));
    const std::int64_t d = plan->model->num_params(), bitmap = (gating.num_blocks() + 7) / 8;
    std::int64_t first = 0;
    std::vector<char> reachable(static_cast<std::size_t>(d) + 1, 0);  // sums of non-first block subsets
    reachable[0] = 1;
    for (const auto& b : gating.blocks()) {
      if (b.first) {
        first += b.size;
        continue;
      }
      for (std::int64_t s = d; s >= b.size; --s) reachable[static_cast<std::size_t>(s)] |= reachable[static_cast<std::size_t>(s - b.size)];
    }
    const MemorySink sink = test::run_plan(*plan);
    int uplinks = 0;
    for (const auto& t : sink.traffic_rows) {
      ASSERT_EQ(t.messages, 1);
      const std::int64_t payload = t.bytes - Message::kHeaderBytes;
      if (t.src == 0) {
        EXPECT_EQ(payload, 4 * d);
        continue;
      }
      ++uplinks;
      ASSERT_EQ(t.dst, 0);
      ASSERT_EQ((payload - bitmap) % 4, 0);
      const std::int64_t params = (payload - bitmap) / 4;
      ASSERT_GE(params, first);
      ASSERT_LE(params, d);
      EXPECT_TRUE(reachable[static_cast<std::size_t>(params - first)]) << params;
      if (budget == 1.0) EXPECT_EQ(params, d);
      else EXPECT_LT(params, d);  // with 3 batches of a 0.3 budget some block always stays out
    }
    EXPECT_EQ(uplinks, 3 * 10);
    EXPECT_NE(gating.gate_params() * 4 + bitmap, 4 * d + bitmap);
    const auto sent = values(sink, "sent_fraction"), kept = values(sink, "kept_fraction");
    ASSERT_EQ(sent.size(), 3u);
    for (std::size_t r = 0; r < 3; ++r) {
      EXPECT_LE(kept[r], sent[r] + 1e-12);
      EXPECT_LE(kept[r], static_cast<double>(gating.max_kept(budget)) / static_cast<double>(d) + 1e-12);
    }
    const double ideal = 3 * 10 * 4.0 * budget * static_cast<double>(d);
    EXPECT_NEAR(sink.last("ideal_uplink_bytes"), ideal, 1e-9 * ideal);
  }
}

TEST(PFedGateBudgets, FromComputeFollowsSpeedAndSparseClientsFinishSooner) {
  auto plan = test::plan_from(kGate, {"protocol.budget=from_compute", "compute.kind=lognormal", "compute.sigma=1.0"});
  std::vector<double> speeds = draw_speeds(plan->sim.compute, 11, 7);
  const MemorySink sink = test::run_plan(*plan);
  std::map<NodeId, double> budget;
  for (const auto& m : sink.metrics)
    if (m.name == "budget") budget[m.node] = m.value;
  ASSERT_EQ(budget.size(), 10u);
  std::vector<double> clients(speeds.begin() + 1, speeds.end());
  std::sort(clients.begin(), clients.end());
  const double median = (clients[4] + clients[5]) / 2;
  int sparse = 0;
  for (const auto& [node, s] : budget) {
    EXPECT_DOUBLE_EQ(s, std::clamp(speeds[static_cast<std::size_t>(node)] / median, 0.2, 1.0)) << node;
    sparse += s < 1.0;
  }
  EXPECT_GE(sparse, 4);
  // Fixed speeds: a sparser budget means fewer FLOPs, so round 1 ends sooner; budget 1 costs the
  // gate on top of FedAvg's dense work.
  auto round1 = [](const MemorySink& s) {
    for (const auto& m : s.metrics)
      if (m.name == "train_loss") return m.time;
    return SimTime{-1};
  };
  const SimTime t03 = round1(test::run_plan(*test::plan_from(kGate, {"protocol.budget=0.3"})));
  const SimTime t10 = round1(test::run_plan(*test::plan_from(kGate, {"protocol.budget=1"})));
  const SimTime fedavg = round1(test::run_plan(*test::plan_from(kFedAvg)));
  EXPECT_LT(t03, t10);
  EXPECT_LT(fedavg, t10);
  const auto uniform = test::run_plan(*test::plan_from(kGate, {"protocol.budget={uniform: [0.3, 0.6]}"}));
  for (const auto& m : uniform.metrics)
    if (m.name == "budget") {
      EXPECT_TRUE(m.value >= 0.3 && m.value <= 0.6) << m.value;
    }
}

TEST(PFedGateConfig, BadValuesNameTheKey) {
  auto fails = [](const std::string& yaml, const std::vector<std::string>& overrides, const std::string& key) {
    try {
      test::plan_from(yaml, overrides);
      ADD_FAILURE() << "no error for " << key;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  fails(kGate, {"protocol.budget=0"}, "protocol.budget");
  fails(kGate, {"protocol.budget=1.5"}, "protocol.budget");
  fails(kGate, {"protocol.budget={uniform: [0.6, 0.3]}"}, "protocol.budget");
  fails(kGate, {"protocol.budget={normal: 1}"}, "protocol.budget");
  fails(kGate, {"protocol.budget=fast"}, "protocol.budget");
  fails(kGate, {"compressor.kind=topk"}, "compressor.kind");
  fails(kGate, {"aggregator.kind=median"}, "aggregator.kind");
  fails(kGate, {"train.prox_mu=0.1"}, "train.prox_mu");
  fails(kFedAvg, {"protocol.kind=dpsgd", "topology.kind=ring"}, "data.local_test_fraction");
  fails(kFedAvg, {"data.local_test_fraction=0", "data.novel_clients=2"}, "data.novel_clients");
  fails(kFedAvg, {"data.local_test_fraction=0", "eval.finetune_steps=2"}, "eval.finetune_steps");
  fails(kFedAvg, {"data.novel_clients=10"}, "data.novel_clients");
}

TEST(PFedGateDeterminism, SameMetricsForOneAndTwoThreads) {
  const std::vector<std::string> overrides = {"data.novel_clients=2", "eval.finetune_steps=3", "sampling.fraction=0.5"};
  for (const std::string& yaml : {kGate, kFedAvg}) {
    auto with = overrides;
    if (yaml == kGate) with.push_back("protocol.budget={uniform: [0.3, 1]}");
    const MemorySink one = test::run_plan(*test::plan_from(yaml, with), 1);
    const MemorySink two = test::run_plan(*test::plan_from(yaml, with), 2);
    ASSERT_EQ(one.metrics.size(), two.metrics.size());
    std::set<std::string> names;
    for (std::size_t i = 0; i < one.metrics.size(); ++i) {
      const auto &a = one.metrics[i], &b = two.metrics[i];
      ASSERT_EQ(a.name, b.name);
      names.insert(a.name);
      if (a.name == "wall_seconds") continue;
      EXPECT_EQ(a.time, b.time) << a.name;
      EXPECT_EQ(std::memcmp(&a.value, &b.value, sizeof(double)), 0) << a.name << " round " << a.round;
    }
    EXPECT_TRUE(names.count("personalized_accuracy") && names.count("novel_accuracy"));
    EXPECT_EQ(one.traffic_rows, two.traffic_rows);
  }
}

}  // namespace
}  // namespace starling
