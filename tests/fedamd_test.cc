// FedAMD (card 8.1): the miners' SARAH recursion, the server's anchor table, anchor sampling,
// bytes, determinism and config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "config/experiment.h"
#include "learning/training.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

// 8 LEAF-synthetic clients (each its own model: heterogeneous), half of them a round.
const std::string kConfig = R"yaml(
seed: 5
rounds: 6
data: { dataset: synthetic, clients: 8, max_samples: 120 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: fedamd, local_steps: 4 }
sampling: { kind: uniform, fraction: 0.5 }
eval: { every: 1 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides) { return test::plan_from(kConfig, overrides); }
MemorySink run(RunPlan& p, int threads = 1) { return test::run_plan(p, threads); }
MemorySink run(const std::vector<std::string>& overrides, int threads = 1) { return run(*plan(overrides), threads); }

std::vector<double> values(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name && m.node == kNoNode) out.push_back(m.value);
  return out;
}

Vector initial_model(const RunPlan& p) {
  Rng rng(p.seed, kNoNode, Purpose::kModelInit);
  return p.model->init(rng);
}

// The miner's loop against its definition, written out step by step: on minibatch k (the same
// shuffled epochs as train_local), v_k = v_{k-1} + grad(y_k) - grad(y_{k-1}), y_{k+1} = y_k - lr v_k.
TEST(FedAmd, SarahStepsFollowTheRecursion) {
  auto p = plan({});
  const Model& model = *p->model;
  const Dataset& data = *p->task->train;
  const auto& indices = p->task->partition[2];
  const int batch = 16;
  const std::int64_t steps = static_cast<std::int64_t>(indices.size()) / batch + 3;  // into a second epoch
  ASSERT_GT(indices.size(), 2u * batch);
  const Vector x = initial_model(*p);
  Rng noise(1, 0, Purpose::kTest);
  Vector v0(model.num_params());
  for (auto& e : v0) e = static_cast<float>(0.1 * noise.normal());
  const float lr = 0.1f;

  Rng rng(9, 3, Purpose::kDataShuffle);
  Vector y = x, v = v0;
  Sgd sgd(lr, 0.0, 0.0);
  const TrainStats stats = train_sarah(model, sgd, data, indices, batch, rng, y, v, steps);
  EXPECT_EQ(stats.batches, steps);

  Rng ref_rng(9, 3, Purpose::kDataShuffle);
  std::vector<std::int32_t> order(indices.begin(), indices.end());
  Vector ry = x, rprev = x, rv = v0, g(model.num_params()), gp(model.num_params());
  Matrix features;
  std::vector<std::int32_t> labels;
  Workspace ws;
  std::int64_t k = 0;
  while (k < steps) {
    ref_rng.shuffle(std::span(order));
    for (std::size_t start = 0; start < order.size() && k < steps; start += batch, ++k) {
      const auto n = std::min<std::size_t>(batch, order.size() - start);
      const std::span<const std::int32_t> members(order.data() + start, n);
      data.gather(members, features);
      labels.assign(n, 0);
      for (std::size_t j = 0; j < n; ++j) labels[j] = data.y[static_cast<std::size_t>(members[j])];
      model.loss_and_gradient(ry, features, labels, g, ws);
      model.loss_and_gradient(rprev, features, labels, gp, ws);
      rv = rv + g - gp;
      rprev = ry;
      ry = ry - lr * rv;
    }
  }
  EXPECT_TRUE(y.isApprox(ry, 1e-5f)) << (y - ry).norm();
  EXPECT_TRUE(v.isApprox(rv, 1e-5f)) << (v - rv).norm();
  EXPECT_GT((v - v0).norm(), 1e-3 * v0.norm());  // the corrections did something
}

// On the full batch every step sees the same function f, and the recursion telescopes:
// v_k = v_0 + grad f(y_k) - grad f(x).
TEST(FedAmd, SarahOnTheFullBatchTelescopes) {
  auto p = plan({});
  const Model& model = *p->model;
  const Dataset& data = *p->task->train;
  const auto& indices = p->task->partition[1];
  const Vector x = initial_model(*p);
  Vector gx;
  batch_gradient(model, data, indices, x, gx);
  Vector v0 = 0.5f * gx;
  Vector y = x, v = v0;
  Rng rng(2, 1, Purpose::kDataShuffle);
  Sgd sgd(0.2, 0.0, 0.0);
  const int full = static_cast<int>(indices.size());
  train_sarah(model, sgd, data, indices, full, rng, y, v, 7);
  Vector ry = x, gy;
  for (int k = 0; k < 7; ++k) {
    batch_gradient(model, data, indices, ry, gy);
    ry -= 0.2f * (v0 + gy - gx);
  }
  EXPECT_TRUE(y.isApprox(ry, 1e-4f)) << (y - ry).norm() << " of " << ry.norm();
  // batch_gradient agrees with one minibatch holding all samples.
  Matrix features;
  data.gather(indices, features);
  std::vector<std::int32_t> labels;
  for (auto i : indices) labels.push_back(data.y[static_cast<std::size_t>(i)]);
  Vector g_one(model.num_params());
  Workspace ws;
  model.loss_and_gradient(x, features, labels, g_one, ws);
  EXPECT_TRUE(gx.isApprox(g_one, 1e-5f));
}

// p = 1: every sampled client is an anchor every round, so x stays x_0 for good.
TEST(FedAmd, AllAnchorsNeverMoveTheModel) {
  auto p = plan({"protocol.p=1"});
  const auto want = evaluate(*p->model, initial_model(*p), *p->task->test);
  const MemorySink s = run(*p);
  const auto loss = values(s, "test_loss"), anchors = values(s, "anchors"), participants = values(s, "participants");
  ASSERT_EQ(loss.size(), 6u);
  for (std::size_t r = 0; r < loss.size(); ++r) {
    EXPECT_EQ(loss[r], want.loss) << r;
    EXPECT_EQ(anchors[r], 4.0);
    EXPECT_EQ(participants[r], 4.0);
  }
}

// p = 0 and K = 1: the table keeps the b_i of x_0, every miner takes the one step -lr v_glob, so
// x_R = x_0 - R eta_g lr mean_i grad f_i(x_0) whoever is sampled.
TEST(FedAmd, NoAnchorsStepAlongTheMeanOfTheInitialTable) {
  auto p = plan({"protocol.p=0", "protocol.local_steps=1", "server_optimizer.lr=0.5"});
  const auto& part = p->task->partition;
  const Vector x0 = initial_model(*p);
  Vector sum = Vector::Zero(x0.size()), g;
  for (const auto& indices : part) {
    batch_gradient(*p->model, *p->task->train, indices, x0, g);
    sum += g;
  }
  const Vector v_glob = sum / static_cast<float>(part.size());
  const MemorySink s = run(*p);
  const auto loss = values(s, "test_loss");
  ASSERT_EQ(loss.size(), 6u);
  for (int r = 1; r <= 6; ++r) {
    const Vector x = x0 - (0.5f * 0.05f * static_cast<float>(r)) * v_glob;
    EXPECT_NEAR(loss[static_cast<std::size_t>(r - 1)], evaluate(*p->model, x, *p->task->test).loss, 1e-5) << r;
  }
  for (double a : values(s, "anchors")) EXPECT_EQ(a, 0.0);
}

// Anchors are independent Bernoulli(p) draws: over 1200 draws the share stays within 5 standard
// deviations of p. The period variant makes every client of rounds 1, 1 + P, ... an anchor.
TEST(FedAmd, AnchorShareIsP) {
  const MemorySink s = run({"rounds=300", "protocol.p=0.3", "protocol.local_steps=1", "eval.every=300"});
  double anchors = 0.0, draws = 0.0;
  int none = 0, some = 0;
  const auto a = values(s, "anchors"), n = values(s, "participants");
  ASSERT_EQ(a.size(), 300u);
  for (std::size_t r = 0; r < a.size(); ++r) {
    anchors += a[r], draws += n[r];
    EXPECT_LE(a[r], n[r]);
    (a[r] == 0 ? none : some) += 1;
  }
  EXPECT_EQ(draws, 1200.0);
  const double sd = std::sqrt(draws * 0.3 * 0.7);
  EXPECT_NEAR(anchors, 0.3 * draws, 5 * sd);
  EXPECT_GT(none, 0);
  EXPECT_GT(some, 0);

  const MemorySink periodic = run({"protocol.period=3", "rounds=7"});
  const auto pa = values(periodic, "anchors");
  ASSERT_EQ(pa.size(), 7u);
  for (std::size_t r = 0; r < pa.size(); ++r) EXPECT_EQ(pa[r], r % 3 == 0 ? 4.0 : 0.0) << "round " << r + 1;
  // Anchor rounds leave the model where it was.
  const auto loss = values(periodic, "test_loss");
  EXPECT_EQ(loss[3], loss[2]);
  EXPECT_NE(loss[2], loss[1]);
}

// Bytes as sent: the start has every client receive x and send b_i; then anchors get x and send a
// gradient, miners get [x; v_glob] and send an update. `none` sends 4 bytes per value.
TEST(FedAmd, BytesAreTheModelsSent) {
  for (const std::string codec : {"none", "fp16"}) {
    auto p = plan({"rounds=20", "eval.every=20", "compressor.kind=" + codec, "downlink_compressor.kind=" + codec});
    const std::int64_t d = p->model->num_params(), value = codec == "none" ? 4 : 2, h = Message::kHeaderBytes;
    const MemorySink s = run(*p);
    double want = 8.0 * 2 * (h + value * d);
    for (double anchors : values(s, "anchors"))
      want += anchors * 2 * (h + value * d) + (4 - anchors) * ((h + 2 * value * d) + (h + value * d));
    EXPECT_EQ(s.last("bytes_total"), want) << codec;
  }
}

TEST(FedAmd, SameMetricsForAnyThreadCount) {
  const std::vector<std::string> o = {"compute.kind=lognormal", "protocol.anchor_batch=20"};
  const MemorySink one = run(o, 1), two = run(o, 2);
  ASSERT_EQ(one.metrics.size(), two.metrics.size());
  for (std::size_t i = 0; i < one.metrics.size(); ++i) {
    if (one.metrics[i].name == "wall_seconds") continue;
    EXPECT_EQ(one.metrics[i].name, two.metrics[i].name);
    EXPECT_EQ(one.metrics[i].time, two.metrics[i].time);
    EXPECT_EQ(std::memcmp(&one.metrics[i].value, &two.metrics[i].value, sizeof(double)), 0) << one.metrics[i].name;
  }
  EXPECT_EQ(one.traffic_rows, two.traffic_rows);
  // An anchor batch at least the largest partition is the whole partition (the default).
  const MemorySink all = run({}), big = run({"protocol.anchor_batch=100000"});
  EXPECT_EQ(values(all, "test_loss"), values(big, "test_loss"));
  EXPECT_NE(values(all, "test_loss"), values(one, "test_loss"));
}

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key) {
  test::expect_config_error(kConfig, overrides, key);
}

TEST(FedAmd, ConfigErrorsNameTheKey) {
  expect_config_error({"protocol.p=1.5"}, "protocol.p");
  expect_config_error({"protocol.p=-0.1"}, "protocol.p");
  expect_config_error({"protocol.period=1"}, "protocol.period");
  expect_config_error({"protocol.period=3", "protocol.p=0.2"}, "protocol.p");
  expect_config_error({"protocol.local_steps=0"}, "protocol.local_steps");
  expect_config_error({"protocol.anchor_batch=-1"}, "protocol.anchor_batch");
  expect_config_error({"compressor.kind=topk"}, "compressor.kind");
  expect_config_error({"downlink_compressor.kind=qsgd"}, "downlink_compressor.kind");
  expect_config_error({"compressor.feedback=ef"}, "compressor.feedback");
  expect_config_error({"topology.kind=ring"}, "topology.kind");
  expect_config_error({"train.prox_mu=0.1"}, "train.prox_mu");
  expect_config_error({"attack.kind=sign_flip"}, "attack.kind");
  expect_config_error({"protocol.buffer=3"}, "protocol.buffer");
  EXPECT_NO_THROW(plan({"protocol.period=2"}));
}

}  // namespace
}  // namespace starling
