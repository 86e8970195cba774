// SCALLION and SCAFCOM (card 7.8) and SCAFFOLD with compressed uplinks: the update rules, the
// bytes, the control-variate invariant, determinism and config errors.
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

// 8 equal IID clients, 5 local steps.
const std::string kConfig = R"yaml(
seed: 5
rounds: 6
data: { dataset: synthetic, clients: 8, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: scallion, local_steps: 5 }
sampling: { kind: uniform, fraction: 0.5 }
eval: { every: 1 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides, const std::string& yaml = kConfig) {
  return test::plan_from(yaml, overrides);
}
MemorySink run(const std::vector<std::string>& overrides, int threads = 1) {
  return test::run_plan(*plan(overrides), threads);
}

std::vector<double> values(const MemorySink& s, const std::string& name) {
  std::vector<double> out;
  for (const auto& m : s.metrics)
    if (m.name == name && m.node == kNoNode) out.push_back(m.value);
  return out;
}

// Bytes of one round's messages into (uplink) or out of (downlink) node 0.
std::int64_t bytes(const MemorySink& s, int round, bool uplink) {
  std::int64_t sum = 0;
  for (const auto& t : s.traffic_rows)
    if (t.round == round && (uplink ? t.dst == 0 : t.src == 0)) sum += t.bytes;
  return sum;
}

Vector random_vector(Rng& rng, std::int64_t d) {
  Vector v(d);
  for (std::int64_t i = 0; i < d; ++i) v[i] = static_cast<float>(rng.uniform() * 2.0 - 1.0);
  return v;
}

// Direct reference computation of the simplified SCAFFOLD step (card 7.8) from the pieces the
// nodes use: after K local steps y = x - lr sum_k (g_k - c_i + c), the SCALLION message is
// delta = (x - y)/(K lr) - c = (mean g) - c_i; the server moves x by -K lr (c + delta) = y - x,
// and SCAFFOLD's option II control c_i+ = c_i + delta.
TEST(ScallionMath, MessageAndDisplacementAreSimplifiedScaffold) {
  Rng rng(1, 0, Purpose::kModelInit);
  const std::int64_t d = 40, K = 7;
  const double lr = 0.03;
  const Vector x = random_vector(rng, d), c = random_vector(rng, d), c_i = random_vector(rng, d);
  Vector y = x, grad_sum = Vector::Zero(d);
  for (std::int64_t k = 0; k < K; ++k) {
    const Vector g = random_vector(rng, d);
    grad_sum += g;
    y -= static_cast<float>(lr) * (g - c_i + c);
  }
  const Vector mean_g = grad_sum / static_cast<float>(K);
  const Vector next = scaffold_client_control(c_i, c, x, y, K, lr);
  EXPECT_LT((next - mean_g).cwiseAbs().maxCoeff(), 1e-4f);  // option II's c_i+ is the mean raw gradient
  const Vector delta = next - c_i;
  EXPECT_LT((delta - (mean_g - c_i)).cwiseAbs().maxCoeff(), 1e-4f);
  EXPECT_LT((control_displacement(c, delta, K, lr) - (y - x)).cwiseAbs().maxCoeff(), 1e-5f);
  // SCAFCOM's momentum: v starts at 0; beta = 1 keeps only the newest gradient.
  Vector v;
  scafcom_momentum(v, mean_g, 0.25);
  EXPECT_TRUE(v.isApprox(0.25f * mean_g));
  scafcom_momentum(v, next, 1.0);
  EXPECT_TRUE(v == next);
  EXPECT_EQ(local_batches(33, 16, 2, 0), 6);  // 3 minibatches an epoch (the last short), 2 epochs
  EXPECT_EQ(local_batches(33, 16, 2, 5), 5);
  EXPECT_EQ(local_batches(0, 16, 2, 5), 0);
}

// The variance bound each unbiased codec reports (SCALLION's default alpha = 1 / (1 + omega)),
// against Monte Carlo: the mean of C(v) is v and E||C(v) - v||^2 <= omega ||v||^2 (rand-k: =).
TEST(ScallionMath, UnbiasedVarianceBoundsHold) {
  const std::int64_t d = 96;
  Rng data(2, 0, Purpose::kModelInit), rng(3, 0, Purpose::kCompression);
  const Vector v = random_vector(data, d);
  struct Case {
    std::string yaml;
    double low;  // the measured ratio must reach low * omega (random_projection: the d of n padded
                 // coordinates keep about d/n of the error, here 0.75)
  };
  for (const Case& c : {Case{"{kind: randk, k: 12}", 0.85}, Case{"{kind: qsgd, levels: 2, bucket: 32}", 0.0},
                        Case{"{kind: random_projection, k: 16}", 0.6}, Case{"{kind: none}", 0.0}}) {
    YAML::Node doc(YAML::NodeType::Map);
    doc["compressor"] = YAML::Load(c.yaml);
    Section root(doc);
    Section section = root.child("compressor");
    auto codec = make_compressor(section);
    const auto omega = codec->unbiased_variance(d);
    ASSERT_TRUE(omega.has_value()) << c.yaml;
    constexpr int kTrials = 2000;
    Vector sum = Vector::Zero(d);
    double err = 0.0;
    for (int t = 0; t < kTrials; ++t) {
      const Vector out = codec->decode(codec->encode(v, rng), d);
      sum += out;
      err += (out - v).squaredNorm();
    }
    const double ratio = err / kTrials / v.squaredNorm();
    EXPECT_LE(ratio, *omega * 1.1 + 1e-9) << c.yaml << " omega " << *omega;
    EXPECT_GE(ratio, *omega * c.low) << c.yaml << " omega " << *omega;
    EXPECT_LT((sum / kTrials - v).norm(), 0.1 * v.norm() * std::sqrt(*omega + 1e-3)) << c.yaml;
  }
  for (const std::string biased : {"{kind: topk}", "{kind: sign}", "{kind: randk, unbiased: false}"}) {
    YAML::Node doc(YAML::NodeType::Map);
    doc["compressor"] = YAML::Load(biased);
    Section root(doc);
    Section section = root.child("compressor");
    EXPECT_FALSE(make_compressor(section)->unbiased_variance(d).has_value()) << biased;
  }
}

TEST(ScallionMath, PackPairRoundTripsAndRejectsBadLengths) {
  const Payload a{1, 2, 3}, b{9};
  const Payload p = pack_pair(a, b);
  EXPECT_EQ(p.size(), 4u + 3u + 1u);
  const auto [x, y] = unpack_pair(p, "test");
  EXPECT_EQ(x, a);
  EXPECT_EQ(y, b);
  EXPECT_THROW(unpack_pair(Payload{1, 0}, "test"), Error);
  EXPECT_THROW(unpack_pair(Payload{5, 0, 0, 0, 1}, "test"), Error);
}

// With `none` and alpha = 1 SCALLION is SCAFFOLD rewritten (the test above): the client's c_i
// update is option II's, the server's c update is SCAFFOLD's, and the model moves by the
// displacement -K lr (c + delta) = y - x that SCAFFOLD's client sends. The protocols compute
// these through different float operations, so they agree to rounding, not bit for bit.
TEST(Scallion, NoCompressionAlphaOneIsScaffold) {
  const MemorySink scallion = run({"protocol.alpha=1"}), scaffold = run({"protocol.kind=scaffold"});
  const auto fedavg = run({"protocol.kind=fedavg"});
  for (const std::string name : {"train_loss", "test_loss", "test_accuracy"}) {
    const auto a = values(scallion, name), b = values(scaffold, name);
    ASSERT_EQ(a.size(), 6u) << name;
    ASSERT_EQ(b.size(), 6u) << name;
    for (std::size_t r = 0; r < a.size(); ++r)
      EXPECT_NEAR(a[r], b[r], 1e-5 * std::abs(b[r]) + 1e-7) << name << " " << r;
  }
  // Not vacuous: FedAvg differs once the controls act (round 2 on).
  EXPECT_GT(std::abs(values(fedavg, "test_loss")[5] - values(scaffold, "test_loss")[5]), 1e-4);
  // SCAFCOM with beta = 1 and alpha = 1 sends g - c_i too: the same run bit for bit.
  const MemorySink scafcom = run({"protocol.kind=scafcom", "protocol.beta=1", "protocol.alpha=1"});
  EXPECT_EQ(values(scafcom, "test_loss"), values(scallion, "test_loss"));
  EXPECT_EQ(values(scafcom, "bytes_total"), values(scallion, "bytes_total"));
  // Momentum changes the run.
  EXPECT_NE(values(run({"protocol.kind=scafcom"}), "test_loss"), values(scallion, "test_loss"));
}

// Uplink: one compressed vector per sampled client and round (randk: 8-byte seed, u32 k, k
// floats), plus the 32-byte header; downlink: [x; c], 8d bytes + header per client.
TEST(Scallion, UplinkIsOneCompressedVectorPerSampledClient) {
  auto p = plan({"compressor.kind=randk", "compressor.ratio=0.05"});
  const std::int64_t d = p->model->num_params();
  const std::int64_t k = std::llround(0.05 * static_cast<double>(d));
  const MemorySink s = test::run_plan(*p);
  const std::int64_t sampled = 4;
  for (int r = 1; r <= 6; ++r) {
    EXPECT_EQ(bytes(s, r, true), sampled * (Message::kHeaderBytes + 8 + 4 + 4 * k)) << r;
    EXPECT_EQ(bytes(s, r, false), sampled * (Message::kHeaderBytes + 2 * 4 * d)) << r;
  }
  // qsgd: per 512-bucket a float norm, per coordinate 1 sign bit + 3 level bits (s = 7).
  const MemorySink q = run({"compressor.kind=qsgd"});
  const std::int64_t qbytes = 4 * ((d + 511) / 512) + (d * 4 + 7) / 8;
  EXPECT_EQ(bytes(q, 3, true), sampled * (Message::kHeaderBytes + qbytes));
  // SCAFCOM with contractive randk: the same one vector.
  const MemorySink c = run({"protocol.kind=scafcom", "compressor.kind=randk", "compressor.ratio=0.05",
                            "compressor.unbiased=false"});
  EXPECT_EQ(bytes(c, 2, true), sampled * (Message::kHeaderBytes + 8 + 4 + 4 * k));
  // SCAFFOLD sends two vectors, each compressed, behind a 4-byte length: twice the payload.
  const MemorySink f = run({"protocol.kind=scaffold", "compressor.kind=randk", "compressor.ratio=0.05"});
  EXPECT_EQ(bytes(f, 2, true), sampled * (Message::kHeaderBytes + 4 + 2 * (8 + 4 + 4 * k)));
  EXPECT_EQ(bytes(f, 2, false), sampled * (Message::kHeaderBytes + 2 * 4 * d));
}

// Runs a plan and returns the server's c and the mean of the clients' c_i at the end.
std::pair<Vector, Vector> controls_after(const std::vector<std::string>& overrides) {
  auto p = plan(overrides);
  std::vector<const Node*> nodes;
  for (const auto& n : p->nodes.nodes) nodes.push_back(n.get());
  MemorySink sink;
  SimRuntime rt(std::move(p->nodes), p->sim, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  const Vector c = *control_variate(*nodes[0]);
  Vector mean = Vector::Zero(c.size());
  for (std::size_t i = 1; i < nodes.size(); ++i) {
    const Vector* c_i = control_variate(*nodes[i]);
    EXPECT_NE(c_i, nullptr);
    if (c_i && c_i->size() > 0) mean += *c_i;  // empty: a client never sampled, c_i = 0
  }
  return {c, mean / static_cast<float>(nodes.size() - 1)};
}

// c += (alpha/N) sum_S delta on the server and c_i += alpha delta on each client (delta as the
// server decodes it) keep c = mean_i c_i, whatever the codec and who takes part.
TEST(Scallion, GlobalControlStaysTheMeanOfClientControls) {
  for (const auto& overrides : std::vector<std::vector<std::string>>{
           {"sampling.fraction=1.0", "compressor.kind=randk", "compressor.ratio=0.1"},
           {"sampling.fraction=1.0", "compressor.kind=qsgd", "protocol.alpha=0.5"},
           {"compressor.kind=randk", "compressor.ratio=0.1"},  // half the clients a round
           {"protocol.kind=scafcom", "sampling.fraction=1.0", "compressor.kind=topk", "compressor.ratio=0.1"},
           {"protocol.kind=scaffold", "sampling.fraction=1.0", "compressor.kind=topk", "compressor.ratio=0.1",
            "compressor.feedback=ef"},
           {"protocol.kind=scaffold", "sampling.fraction=1.0", "compressor.kind=topk", "compressor.ratio=0.1",
            "compressor.feedback=ef21"}}) {
    const auto [c, mean] = controls_after(overrides);
    ASSERT_GT(c.norm(), 1e-3f) << overrides.back();  // the controls moved
    EXPECT_LT((c - mean).cwiseAbs().maxCoeff(), 1e-5f * c.cwiseAbs().maxCoeff()) << overrides.back();
  }
}

TEST(Scallion, SameMetricsForAnyThreadCount) {
  for (const auto& overrides : std::vector<std::vector<std::string>>{
           {"compressor.kind=randk", "compressor.ratio=0.1"},
           {"protocol.kind=scafcom", "compressor.kind=topk", "compressor.ratio=0.1"},
           {"protocol.kind=scaffold", "compressor.kind=topk", "compressor.ratio=0.1", "compressor.feedback=ef"}}) {
    const MemorySink one = run(overrides, 1), two = run(overrides, 2);
    ASSERT_EQ(one.metrics.size(), two.metrics.size());
    for (std::size_t i = 0; i < one.metrics.size(); ++i) {
      EXPECT_EQ(one.metrics[i].name, two.metrics[i].name);
      if (one.metrics[i].name == "wall_seconds") continue;  // real time
      EXPECT_EQ(std::memcmp(&one.metrics[i].value, &two.metrics[i].value, sizeof(double)), 0)
          << one.metrics[i].name << " " << one.metrics[i].value << " vs " << two.metrics[i].value;
    }
    EXPECT_EQ(one.traffic_rows, two.traffic_rows);
  }
}

// The default alpha is 1 / (1 + omega) of the codec (randk: omega = d/k - 1, so alpha = k/d).
TEST(Scallion, DefaultAlphaIsOneOverOnePlusOmega) {
  auto p = plan({"compressor.kind=randk", "compressor.k=7"});
  const std::int64_t d = p->model->num_params();
  EXPECT_NE(p->resolved_config.find("alpha: " + Section::shortest(1.0 / (1.0 + (static_cast<double>(d) / 7.0 - 1.0)))),
            std::string::npos)
      << p->resolved_config;
  EXPECT_NE(plan({})->resolved_config.find("alpha: 1"), std::string::npos);
}

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key, const std::string& words) {
  test::expect_config_error(kConfig, overrides, key, words);
}

TEST(Scallion, ConfigErrorsNameTheKey) {
  expect_config_error({"compressor.kind=topk"}, "compressor.kind", "unbiased");
  expect_config_error({"compressor.kind=randk", "compressor.unbiased=false"}, "compressor.kind", "unbiased");
  expect_config_error({"compressor.kind=sign"}, "compressor.kind", "scafcom");
  expect_config_error({"protocol.kind=scafcom", "compressor.kind=randk"}, "compressor.kind", "contractive");
  expect_config_error({"protocol.kind=scafcom", "compressor.kind=qsgd"}, "compressor.kind", "scallion");
  expect_config_error({"compressor.kind=randk", "compressor.feedback=ef"}, "compressor.feedback", "feedback: none");
  expect_config_error({"protocol.kind=scafcom", "compressor.kind=topk", "compressor.feedback=ef21"},
                      "compressor.feedback", "control variates");
  expect_config_error({"downlink_compressor.kind=topk"}, "downlink_compressor.kind", "dense compressor (bf16, fp16, none)");
  expect_config_error({"protocol.kind=scaffold", "downlink_compressor.kind=qsgd"}, "downlink_compressor.kind",
                      "dense compressor (bf16, fp16, none)");
  expect_config_error({"protocol.alpha=0"}, "protocol.alpha", "");
  expect_config_error({"protocol.alpha=1.5"}, "protocol.alpha", "");
  expect_config_error({"protocol.kind=scafcom", "protocol.beta=0"}, "protocol.beta", "");
  // scallion has no momentum: a key of another kind, told from a typo
  expect_config_error({"protocol.beta=0.5"}, "protocol.beta", "is a key of scafcom; protocol.kind is scallion");
  expect_config_error({"topology.kind=ring"}, "topology.kind", "star");
  expect_config_error({"attack.kind=sign_flip"}, "attack.kind", "");
  EXPECT_NO_THROW(plan({"protocol.kind=scaffold", "compressor.kind=topk", "compressor.feedback=ef"}));
  EXPECT_NO_THROW(plan({"protocol.kind=scafcom", "compressor.kind=sign"}));
  EXPECT_NO_THROW(plan({"compressor.kind=random_projection", "downlink_compressor.kind=fp16"}));
}

}  // namespace
}  // namespace starling
