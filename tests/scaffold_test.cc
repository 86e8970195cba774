// SCAFFOLD end to end through the SimRuntime API, its control-variate rule, bytes and config.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "config/experiment.h"
#include "nodes/server_client.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

// 8 equal IID clients, all of them every round.
const std::string kConfig = R"yaml(
seed: 3
rounds: 6
data: { dataset: synthetic, clients: 8, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: scaffold, local_steps: 1 }
sampling: { kind: uniform, fraction: 1.0 }
eval: { every: 1 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::string& yaml, const std::vector<std::string>& overrides) {
  return test::plan_from(yaml, overrides);
}

MemorySink run(RunPlan& p) { return test::run_plan(p); }
MemorySink run(const std::vector<std::string>& overrides, const std::string& yaml = kConfig) {
  return run(*plan(yaml, overrides));
}

std::vector<double> values(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name && m.node == kNoNode) out.push_back(m.value);
  return out;
}

TEST(Scaffold, ClientControlIsOptionTwo) {
  Vector c_i(2), c(2), x(2), y(2);
  c_i << 1, -1;
  c << 0.5, 0.5;
  x << 2, 2;
  y << 1, 3;  // x - y = (1, -1) after K = 4 steps of lr 0.5: mean corrected step (0.5, -0.5)
  Vector want(2);
  want << 1 - 0.5 + 0.5, -1 - 0.5 - 0.5;
  EXPECT_TRUE(scaffold_client_control(c_i, c, x, y, 4, 0.5).isApprox(want)) << scaffold_client_control(c_i, c, x, y, 4, 0.5);
  Vector a(1), b(2), ab(3);
  a << 1;
  b << 2, 3;
  ab << 1, 2, 3;
  EXPECT_TRUE(concat(a, b) == ab);
}

// With c = c_i = 0 the first round's local steps are FedAvg's bit for bit. With one local step,
// full participation and equal clients, sum_i (c - c_i) = 0 every round, so SCAFFOLD stays FedAvg
// (large-batch SGD) up to float rounding.
TEST(Scaffold, OneLocalStepFullParticipationIsFedAvg) {
  const MemorySink scaffold = run({}), fedavg = run({"protocol.kind=fedavg"});
  for (const std::string name : {"train_loss", "test_loss", "test_accuracy"}) {
    const auto a = values(scaffold, name), b = values(fedavg, name);
    ASSERT_EQ(a.size(), 6u) << name;
    ASSERT_EQ(b.size(), 6u) << name;
    EXPECT_EQ(std::memcmp(&a[0], &b[0], sizeof(double)), 0) << name << ": " << a[0] << " vs " << b[0];
    for (std::size_t r = 1; r < a.size(); ++r) EXPECT_NEAR(a[r], b[r], 1e-4 * std::abs(b[r]) + 1e-6) << name << " " << r;
  }
  // With several local steps the corrections matter after round 1.
  const MemorySink s5 = run({"protocol.local_steps=5"}), f5 = run({"protocol.kind=fedavg", "protocol.local_steps=5"});
  EXPECT_EQ(values(s5, "test_loss")[0], values(f5, "test_loss")[0]);
  EXPECT_NE(values(s5, "test_loss")[5], values(f5, "test_loss")[5]);
}

TEST(Scaffold, BytesPerRoundAreTwoModelsEachWay) {
  auto p = plan(kConfig, {"sampling.fraction=0.5"});
  const std::int64_t d = p->model->num_params();
  const MemorySink s = run(*p);
  // 4 clients a round; each gets [x; c] (8d bytes + a header) and sends dy and dc, each encoded,
  // behind the 4-byte length of the first (8d + 4 bytes + a header).
  const std::int64_t per_round = 4 * (2 * (Message::kHeaderBytes + 2 * 4 * d) + 4);
  EXPECT_EQ(s.last("bytes_total"), static_cast<double>(6 * per_round));
  auto h = plan(kConfig, {"sampling.fraction=0.5", "compressor.kind=fp16", "downlink_compressor.kind=bf16"});
  const MemorySink half = run(*h);
  EXPECT_EQ(half.last("bytes_total"), static_cast<double>(6 * 4 * (2 * (Message::kHeaderBytes + 2 * 2 * d) + 4)));
}

// LEAF Synthetic(1, 1): every client has its own model and feature distribution. Many local
// steps make FedAvg's clients drift towards their own optimum; SCAFFOLD's controls cancel it.
// Compared on the global model's test loss: the train_loss metric is the clients' loss along
// their local steps, which drift lowers (FedAvg's is lower here although its model is worse).
const std::string kHeterogeneous = R"yaml(
seed: 11
rounds: 30
data: { dataset: synthetic, clients: 20 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: scaffold, local_steps: 50 }
sampling: { kind: uniform, fraction: 1.0 }
eval: { every: 30 }
)yaml";

TEST(Scaffold, BeatsFedAvgUnderHeterogeneity) {
  const MemorySink scaffold = run({}, kHeterogeneous), fedavg = run({"protocol.kind=fedavg"}, kHeterogeneous);
  const double s = scaffold.last("test_loss"), f = fedavg.last("test_loss");
  std::printf("final test loss: scaffold %.4f, fedavg %.4f; train loss %.4f vs %.4f\n", s, f, scaffold.last("train_loss"),
              fedavg.last("train_loss"));
  EXPECT_LT(s, 0.9 * f);
}

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key) {
  test::expect_config_error(kConfig, overrides, key);
}

TEST(Scaffold, ConfigErrorsNameTheKey) {
  // Any uplink codec (with any feedback) compresses dy and dc; the downlink's [x; c] takes casts only.
  EXPECT_NO_THROW(plan(kConfig, {"compressor.kind=topk", "compressor.feedback=ef"}));
  expect_config_error({"downlink_compressor.kind=qsgd"}, "downlink_compressor.kind");
  expect_config_error({"downlink_compressor.kind=fp16", "downlink_compressor.feedback=ef"}, "downlink_compressor.feedback");
  expect_config_error({"topology.kind=ring"}, "topology.kind");
  expect_config_error({"protocol.local_steps=-1"}, "protocol.local_steps");
  expect_config_error({"train.prox_mu=-0.1"}, "train.prox_mu");
  expect_config_error({"protocol.kind=dpsgd", "train.prox_mu=0.1"}, "train.prox_mu");
  EXPECT_NO_THROW(plan(kConfig, {"train.prox_mu=0.01"}));
  EXPECT_NO_THROW(plan(kConfig, {"protocol.kind=fedbuff", "train.prox_mu=0.01"}));
}

}  // namespace
}  // namespace starling
