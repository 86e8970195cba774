// zo_shared ("Just One Byte", card 5): the 1-byte quantizer, the SPSA estimate, exact parity of the
// distributed run with a centralised loop over the same library functions, bytes on the wire,
// identical replicas, config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "config/experiment.h"
#include "learning/zeroth_order.h"
#include "nodes/zo_shared.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

const std::string kConfig = R"yaml(
seed: 5
rounds: 30
data: { dataset: synthetic, clients: 4 }
model: { kind: logreg }
train: { lr: 0.01, batch_size: 16 }
protocol: { kind: zo_shared, perturbations: 2 }
eval: { every: 10, nodes: 1 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides = {}) {
  return test::plan_from(kConfig, overrides);
}

std::vector<double> series(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name) out.push_back(m.value);
  return out;
}

// Runs the plan; `models` receives every node's final replica.
MemorySink run(RunPlan& p, std::vector<Vector>* models = nullptr, int threads = 1) {
  std::vector<const Node*> nodes;
  for (const auto& n : p.nodes.nodes) nodes.push_back(n.get());
  MemorySink sink;
  auto options = p.sim;
  options.threads = threads;
  SimRuntime rt(std::move(p.nodes), options, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  if (models)
    for (const Node* n : nodes) models->push_back(zo_shared_model(*n));
  return sink;
}

TEST(ZoQuantizer, RoundTripWithinHalfALogStep) {
  for (double log_g = -3.9; log_g <= 3.9; log_g += 0.01) {
    for (float sign : {1.0f, -1.0f}) {
      const float g = sign * static_cast<float>(std::exp(log_g));
      const float decoded = zo::dequantize_log(zo::quantize_log(g));
      EXPECT_EQ(std::signbit(decoded), std::signbit(g)) << g;
      EXPECT_LE(std::fabs(std::log(std::fabs(decoded)) - log_g), 0.5 / 16 + 1e-6) << g;
    }
  }
}

TEST(ZoQuantizer, ZeroNanAndClamping) {
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(0.0f)), 0.0f);
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(-0.0f)), 0.0f);
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(std::numeric_limits<float>::quiet_NaN())), 0.0f);
  const float top = static_cast<float>(std::exp(63.0 / 16)), bottom = static_cast<float>(std::exp(-63.0 / 16));
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(1e6f)), top);
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(std::numeric_limits<float>::infinity())), top);
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(-1e6f)), -top);
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(1e-9f)), bottom);  // tiny but nonzero stays nonzero
  EXPECT_EQ(zo::dequantize_log(zo::quantize_log(-1e-30f)), -bottom);
  // Every code decodes, and re-encoding a decoded value gives the code back (one code per value).
  for (int code = 0; code < 256; ++code) {
    const auto c = static_cast<std::uint8_t>(code);
    const float v = zo::dequantize_log(c);
    if (v != 0.0f) {
      EXPECT_EQ(zo::quantize_log(v), c) << code;
    }
  }
}

TEST(ZoSpsa, MeanOfProjectedGradientsPointsAlongTheTrueGradient) {
  // Logistic regression, 5 features x 3 classes (18 parameters), 64 random samples.
  const Mlp model(5, {}, 3);
  Dataset data;
  data.num_classes = 3;
  data.x.resize(5, 64);
  Rng rng(1, 0, Purpose::kTest);
  for (Eigen::Index i = 0; i < data.x.size(); ++i) data.x.data()[i] = static_cast<float>(rng.normal());
  for (int i = 0; i < 64; ++i) data.y.push_back(static_cast<std::int32_t>(rng.below(3)));
  const Vector theta = model.init(rng);
  std::vector<std::int32_t> all(64);
  for (int i = 0; i < 64; ++i) all[static_cast<std::size_t>(i)] = i;
  Vector truth(model.num_params());
  Workspace ws;
  Matrix x = data.x;
  model.loss_and_gradient(theta, x, data.y, truth, ws);

  zo::Scratch scratch;
  Vector z(model.num_params()), mean = Vector::Zero(model.num_params());
  constexpr int kDraws = 2000;
  for (int k = 0; k < kDraws; ++k) {
    zo::perturbation(7, k, 0, 0, z);
    mean += zo::projected_gradient(model, theta, z, 1e-3, data, all, scratch).g * z / kDraws;
  }
  const double cosine = mean.dot(truth) / (mean.norm() * truth.norm());
  EXPECT_GT(cosine, 0.9);  // ~ 1 - d / (2 kDraws) in expectation
  // A single draw is an unbiased but noisy estimate: g is the directional derivative along z.
  zo::perturbation(7, 0, 0, 0, z);
  EXPECT_NEAR(zo::projected_gradient(model, theta, z, 1e-3, data, all, scratch).g, truth.dot(z), 1e-2 * z.norm());
}

TEST(ZoShared, Fp32RunEqualsCentralisedLoopBitForBit) {
  auto p = plan({"protocol.quantize=false"});
  const LearningTask& task = *p->task;
  const Vector initial = zo_shared_model(*p->nodes.nodes[0]);  // the shared initial model
  Vector theta = initial;
  std::vector<Vector> models;
  run(*p, &models);

  // Single-machine SPSA over the same seeds and batches: 4 nodes x 2 projected gradients per step.
  constexpr int kNodes = 4, kS = 2;
  auto optimizer = task.optimizer->clone();
  zo::Scratch scratch;
  Vector z, direction;
  for (int t = 1; t <= 30; ++t) {
    std::vector<float> grads;
    for (NodeId j = 0; j < kNodes; ++j) {
      const Rng shuffle(5, j, Purpose::kDataShuffle);
      for (int s = 0; s < kS; ++s) {
        const auto batch = zo::minibatch(shuffle, t, s, task.partition[static_cast<std::size_t>(j)], task.batch_size);
        z.resize(theta.size());
        zo::perturbation(5, t, j, s, z);
        grads.push_back(zo::projected_gradient(*task.model, theta, z, 1e-3, *task.train, batch, scratch).g);
      }
    }
    zo::apply_projected_gradients(theta, *optimizer, 5, t, kS, grads, z, direction);
  }
  ASSERT_EQ(models.size(), 4u);
  for (const auto& m : models) {
    ASSERT_EQ(m.size(), theta.size());
    EXPECT_TRUE((m.array() == theta.array()).all()) << "max difference " << (m - theta).lpNorm<Eigen::Infinity>();
  }
  EXPECT_GT((theta - initial).lpNorm<Eigen::Infinity>(), 0.0f);  // it did train
}

TEST(ZoShared, BytesPerStepAreScalarsPlusHeaders) {
  // Every iteration each of the 4 nodes sends S scalars to the 3 others: 1 byte (or 4 in fp32)
  // each, plus the message header, whatever the model size.
  constexpr double kMessages = 30.0 * 4 * 3;
  for (const char* model : {"model.hidden=[]", "model.hidden=[32]"}) {  // 610 and 2,282 parameters
    auto quantized = plan({"model.kind=mlp", model});
    EXPECT_EQ(run(*quantized).last("bytes_total"), kMessages * (2 + Message::kHeaderBytes)) << model;
    auto fp32 = plan({"model.kind=mlp", model, "protocol.quantize=false"});
    EXPECT_EQ(run(*fp32).last("bytes_total"), kMessages * (4 * 2 + Message::kHeaderBytes)) << model;
  }
}

TEST(ZoShared, ReplicasStayIdenticalAndLossDecreases) {
  auto p = plan({"rounds=200", "eval.every=50", "protocol.perturbations=1", "train.lr=0.001"});
  std::vector<Vector> models;
  const MemorySink s = run(*p, &models);
  const auto divergence = series(s, "replica_divergence");
  ASSERT_EQ(divergence.size(), 4u);  // rounds 50, 100, 150, 200
  for (double d : divergence) EXPECT_EQ(d, 0.0);
  for (const auto& m : models) EXPECT_TRUE((m.array() == models[0].array()).all());
  const auto loss = series(s, "test_loss");
  ASSERT_EQ(loss.size(), 4u);
  EXPECT_LT(loss.back(), 0.9 * loss.front());
  const auto train = series(s, "train_loss");
  ASSERT_EQ(train.size(), 200u);
  double first = 0.0, last = 0.0;  // means over the first and last 20 iterations (single ones are noisy)
  for (int i = 0; i < 20; ++i) first += train[static_cast<std::size_t>(i)], last += train[train.size() - 1 - static_cast<std::size_t>(i)];
  EXPECT_LT(last, first);
}

TEST(ZoShared, IdenticalMetricsForOneAndTwoThreads) {
  auto one = plan(), two = plan();
  const MemorySink a = run(*one, nullptr, 1), b = run(*two, nullptr, 2);
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (std::size_t i = 0; i < a.metrics.size(); ++i) {
    if (a.metrics[i].name == "wall_seconds") continue;
    EXPECT_EQ(a.metrics[i].value, b.metrics[i].value) << a.metrics[i].name;
  }
  EXPECT_EQ(a.traffic_rows, b.traffic_rows);
}

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key) {
  try {
    plan(overrides);
    FAIL() << "accepted " << overrides.front();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(ZoShared, ConfigErrors) {
  expect_config_error({"protocol.eps=0"}, "protocol.eps");
  expect_config_error({"protocol.eps=-0.1"}, "protocol.eps");
  expect_config_error({"protocol.perturbations=0"}, "protocol.perturbations");
  expect_config_error({"protocol.quantize=maybe"}, "protocol.quantize");
  expect_config_error({"topology.kind=ring"}, "topology.kind");  // not every node hears every other
  expect_config_error({"protocol.epsilon=0.1"}, "protocol.epsilon");  // typo: unknown key
  expect_config_error({"compressor.kind=fp16"}, "compressor.kind");    // would be ignored
}

}  // namespace
}  // namespace starling
