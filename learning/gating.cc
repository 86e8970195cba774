#include "learning/gating.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "learning/gemm.h"

namespace starling {

namespace {
constexpr float kBnEps = 1e-5f;        // BatchNorm1d's eps
constexpr float kBnMomentum = 0.1f;    // BatchNorm1d's momentum
constexpr double kInputEps = 1e-2;     // the standardisation's variance floor
constexpr double kScoreScale = 10.0;   // knapsack values: round(10 x score)
}  // namespace

BlockGating::BlockGating(const Model& model, int blocks_per_tensor, int features)
    : model_params_(model.num_params()), blocks_per_tensor_(blocks_per_tensor), features_(features) {
  for (const auto& t : model.tensors()) {
    const std::int64_t split = std::min<std::int64_t>(blocks_per_tensor, t.size);
    const std::int64_t each = (t.size + split - 1) / split;
    for (std::int64_t begin = 0; begin < t.size; begin += each)
      blocks_.push_back({t.offset + begin, std::min(each, t.size - begin), begin == 0, 0});
  }
}

double BlockGating::min_fraction(double budget) const {
  return std::min(std::max(1.0 / blocks_per_tensor_, 0.1), budget);
}

namespace {
// Per group: the capacity round((s - s_min) x item weights) and the items (non-first blocks).
template <typename Visit>
void for_each_group(const std::vector<GateBlock>& blocks, double budget, double s_min, Visit visit) {
  for (int group = 0; group < 2; ++group) {
    std::vector<int> items;
    std::int64_t weight = 0;
    for (int j = 0; j < static_cast<int>(blocks.size()); ++j)
      if (blocks[static_cast<std::size_t>(j)].group == group && !blocks[static_cast<std::size_t>(j)].first) {
        items.push_back(j);
        weight += blocks[static_cast<std::size_t>(j)].size;
      }
    if (items.empty()) continue;
    visit(items, static_cast<std::int64_t>(std::llround((budget - s_min) * static_cast<double>(weight))));
  }
}
}  // namespace

std::int64_t BlockGating::select(std::span<const float> scores, double budget, std::vector<std::uint8_t>& keep) const {
  const auto n = blocks_.size();
  keep.assign(n, 0);
  std::int64_t kept = 0;
  if (budget >= 1.0) {
    std::fill(keep.begin(), keep.end(), std::uint8_t{1});
    return model_params_;
  }
  for (std::size_t j = 0; j < n; ++j)
    if (blocks_[j].first) keep[j] = 1, kept += blocks_[j].size;
  const double s_min = min_fraction(budget);
  for_each_group(blocks_, budget, s_min, [&](std::vector<int>& items, std::int64_t capacity) {
    std::vector<int> value(n, 0);
    for (int j : items)
      value[static_cast<std::size_t>(j)] = static_cast<int>(
          std::lround(kScoreScale * std::max(static_cast<double>(scores[static_cast<std::size_t>(j)]), s_min)));
    std::stable_sort(items.begin(), items.end(),
                     [&](int a, int b) { return value[static_cast<std::size_t>(a)] > value[static_cast<std::size_t>(b)]; });
    std::int64_t used = 0;
    for (int j : items) {
      const std::int64_t w = blocks_[static_cast<std::size_t>(j)].size;
      if (used + w <= capacity) used += w, keep[static_cast<std::size_t>(j)] = 1;
    }
    kept += used;
  });
  return kept;
}

std::int64_t BlockGating::max_kept(double budget) const {
  if (budget >= 1.0) return model_params_;
  std::int64_t bound = 0;
  for (const auto& b : blocks_)
    if (b.first) bound += b.size;
  for_each_group(blocks_, budget, min_fraction(budget), [&](std::vector<int>&, std::int64_t capacity) {
    bound += std::max<std::int64_t>(capacity, 0);
  });
  return bound;
}

Gate make_gate(const BlockGating& gating, const Dataset& data, std::span<const std::int32_t> indices, Rng& init) {
  const int F = gating.features(), L = gating.num_blocks();
  Gate gate;
  gate.params.resize((std::int64_t{F} + 3) * L);
  const double bound = 1.0 / std::sqrt(static_cast<double>(F));
  for (std::int64_t i = 0; i < (std::int64_t{F} + 1) * L; ++i)
    gate.params[i] = static_cast<float>((2.0 * init.uniform() - 1.0) * bound);
  gate.params.segment((std::int64_t{F} + 1) * L, L).setOnes();   // gamma
  gate.params.segment((std::int64_t{F} + 2) * L, L).setZero();   // beta
  gate.running_mean = Eigen::VectorXf::Zero(L);
  gate.running_var = Eigen::VectorXf::Ones(L);
  // The client's own feature statistics, accumulated in double over chunks.
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(F), sq = Eigen::VectorXd::Zero(F);
  Matrix chunk;
  constexpr std::size_t kChunk = 256;
  for (std::size_t start = 0; start < indices.size(); start += kChunk) {
    data.gather(indices.subspan(start, std::min(kChunk, indices.size() - start)), chunk);
    const Eigen::MatrixXd c = chunk.cast<double>();
    sum += c.rowwise().sum();
    sq += c.array().square().matrix().rowwise().sum();
  }
  const double n = std::max<double>(1.0, static_cast<double>(indices.size()));
  const Eigen::VectorXd mean = sum / n;
  const Eigen::VectorXd var = (sq / n - mean.cwiseProduct(mean)).cwiseMax(0.0);
  gate.input_mean = mean.cast<float>();
  gate.input_scale = (var.array() + kInputEps).rsqrt().matrix().cast<float>();
  return gate;
}

void gate_forward(const Gate& gate, const Eigen::Ref<const Matrix>& x, bool train, GateWorkspace& ws) {
  const Eigen::Index F = x.rows(), n = x.cols();
  const Eigen::Index L = gate.running_mean.size();
  if (gate.input_mean.size() != F) throw std::logic_error("gate_forward: input size does not match the gate");
  Eigen::Map<const Matrix> w(gate.params.data(), F, L);
  Eigen::Map<const Eigen::RowVectorXf> b(gate.params.data() + F * L, L);
  Eigen::Map<const Eigen::VectorXf> gamma(gate.params.data() + (F + 1) * L, L), beta(gate.params.data() + (F + 2) * L, L);
  ws.train = train;
  ws.u = (x.colwise() - gate.input_mean).array().colwise() * gate.input_scale.array();
  ws.h.resize(n, L);
  gemm(Op::kTranspose, ws.u, Op::kNone, w, ws.h);
  ws.h.rowwise() += b;
  if (train) {
    ws.mean = ws.h.colwise().mean().transpose();
    ws.var = (ws.h.rowwise() - ws.mean.transpose()).array().square().colwise().mean().transpose();
  } else {
    ws.mean = gate.running_mean;
    ws.var = gate.running_var;
  }
  ws.inv_std = (ws.var.array() + kBnEps).rsqrt();
  ws.hn = (ws.h.rowwise() - ws.mean.transpose()).array().rowwise() * ws.inv_std.transpose().array();
  ws.s = ((ws.hn.array().rowwise() * gamma.transpose().array()).rowwise() + beta.transpose().array());
  ws.s = (1.0f + (-ws.s.array()).exp()).inverse();
  ws.g = ws.s.colwise().mean().transpose();
}

void gate_update_running(Gate& gate, const GateWorkspace& ws) {
  const auto n = static_cast<float>(ws.h.rows());
  const float unbiased = n > 1 ? n / (n - 1) : 1.0f;
  gate.running_mean = (1 - kBnMomentum) * gate.running_mean + kBnMomentum * ws.mean;
  gate.running_var = (1 - kBnMomentum) * gate.running_var + (kBnMomentum * unbiased) * ws.var;
}

void gate_backward(const Gate& gate, const Eigen::VectorXf& dg, GateWorkspace& ws, Vector& grad) {
  if (!ws.train) throw std::logic_error("gate_backward needs a training forward");
  const Eigen::Index F = ws.u.rows(), n = ws.h.rows(), L = ws.h.cols();
  Eigen::Map<const Eigen::VectorXf> gamma(gate.params.data() + (F + 1) * L, L);
  grad.resize(gate.params.size());
  // g = mean_i s_i: ds = dg / n; through the sigmoid: dy = ds s (1 - s).
  ws.dh = (ws.s.array() * (1.0f - ws.s.array())).rowwise() * (dg.transpose().array() / static_cast<float>(n));
  grad.segment((F + 1) * L, L) = (ws.dh.array() * ws.hn.array()).colwise().sum().transpose();  // gamma
  grad.segment((F + 2) * L, L) = ws.dh.colwise().sum().transpose();                             // beta
  // Batch norm with batch statistics: dh = inv_std / n (n dhn - sum dhn - hn sum(dhn hn)).
  ws.dh.array().rowwise() *= gamma.transpose().array();  // now d hn
  const Eigen::RowVectorXf sum_d = ws.dh.colwise().sum();
  const Eigen::RowVectorXf sum_dh = (ws.dh.array() * ws.hn.array()).colwise().sum();
  ws.dh = ((ws.dh * static_cast<float>(n)).rowwise() - sum_d).array() - ws.hn.array().rowwise() * sum_dh.array();
  ws.dh.array().rowwise() *= ws.inv_std.transpose().array() / static_cast<float>(n);
  Eigen::Map<Matrix> gw(grad.data(), F, L);
  gemm(Op::kNone, ws.u, Op::kNone, ws.dh, gw);                      // W
  grad.segment(F * L, L) = ws.dh.colwise().sum().transpose();       // b
}

void gate_mask(const BlockGating& gating, const Eigen::VectorXf& g, double budget, GateMask& mask) {
  const auto L = static_cast<Eigen::Index>(gating.num_blocks());
  mask.kept = gating.select(std::span(g.data(), static_cast<std::size_t>(L)), budget, mask.keep);
  mask.coef.resize(L);
  mask.dcoef.resize(L);
  const auto s_min = static_cast<float>(gating.min_fraction(budget));
  for (Eigen::Index j = 0; j < L; ++j) {
    const bool kept = mask.keep[static_cast<std::size_t>(j)] != 0;
    mask.coef[j] = kept ? g[j] : 0.0f;
    if (budget >= 1.0) mask.dcoef[j] = 1.0f;
    else mask.dcoef[j] = kept ? 1.0f + (g[j] >= s_min ? g[j] : 0.0f) : 0.0f;
  }
}

void scale_blocks(const BlockGating& gating, const Eigen::VectorXf& coef, const Vector& theta, Vector& out) {
  out.resize(theta.size());
  const auto& blocks = gating.blocks();
  for (std::size_t j = 0; j < blocks.size(); ++j)
    out.segment(blocks[j].offset, blocks[j].size) = coef[static_cast<Eigen::Index>(j)] * theta.segment(blocks[j].offset, blocks[j].size);
}

double gated_loss_and_gradients(const Model& model, const BlockGating& gating, const Gate& gate, double budget,
                                const Vector& theta, const Eigen::Ref<const Matrix>& x,
                                std::span<const std::int32_t> labels, Vector& grad_theta, Vector& grad_gate,
                                GatedWorkspace& ws) {
  gate_forward(gate, x, true, ws.gate);
  gate_mask(gating, ws.gate.g, budget, ws.mask);
  scale_blocks(gating, ws.mask.coef, theta, ws.sparse);
  const double loss = model.loss_and_gradient(ws.sparse, x, labels, ws.grad_sparse, ws.model);
  // d loss / d theta = coef . grad; d loss / d coef_j = <theta_j, grad_j>, times d coef_j / d g_j.
  scale_blocks(gating, ws.mask.coef, ws.grad_sparse, grad_theta);
  const auto& blocks = gating.blocks();
  Eigen::VectorXf dg(static_cast<Eigen::Index>(blocks.size()));
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    const auto jj = static_cast<Eigen::Index>(j);
    dg[jj] = ws.mask.dcoef[jj] == 0.0f ? 0.0f
                                       : ws.mask.dcoef[jj] * theta.segment(blocks[j].offset, blocks[j].size)
                                                                 .dot(ws.grad_sparse.segment(blocks[j].offset, blocks[j].size));
  }
  gate_backward(gate, dg, ws.gate, grad_gate);
  return loss;
}

void clip_norm(Vector& grad, float max_norm) {
  if (max_norm <= 0.0f) return;
  const double norm = static_cast<double>(grad.norm());
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) grad *= static_cast<float>(coef);
}

GatedStats train_gated(const Model& model, const BlockGating& gating, Gate& gate, const GatedTraining& settings,
                       Optimizer& optimizer, const Dataset& data, std::span<const std::int32_t> indices, int epochs,
                       int batch_size, Rng& rng, Vector& theta, std::int64_t max_batches) {
  GatedStats stats;
  stats.used.assign(static_cast<std::size_t>(gating.num_blocks()), 0);
  if (indices.empty()) return stats;
  Vector grad_theta, grad_gate;
  GatedWorkspace ws;
  double loss_sum = 0.0;
  stats.train.batches = for_each_minibatch(
      data, indices, epochs, batch_size, rng, max_batches, [&](const Matrix& batch, std::span<const std::int32_t> labels) {
        const auto n = static_cast<std::int64_t>(labels.size());
        loss_sum += static_cast<double>(n) * gated_loss_and_gradients(model, gating, gate, settings.budget, theta, batch,
                                                                       labels, grad_theta, grad_gate, ws);
        gate_update_running(gate, ws.gate);
        clip_norm(grad_gate, settings.clip);
        gate.params -= settings.gate_lr * grad_gate;
        if (settings.train_model) {
          clip_norm(grad_theta, settings.clip);
          optimizer.step(theta, grad_theta);
        }
        stats.kept_sum += ws.mask.kept;
        for (std::size_t j = 0; j < stats.used.size(); ++j) stats.used[j] |= ws.mask.keep[j];
        stats.train.samples += n;
      });
  stats.train.mean_loss = loss_sum / static_cast<double>(stats.train.samples);
  for (std::size_t j = 0; j < stats.used.size(); ++j)
    if (stats.used[j]) stats.used_params += gating.blocks()[j].size;
  return stats;
}

EvalCounts evaluate_gated(const Model& model, const BlockGating& gating, const Gate& gate, double budget,
                          const Vector& theta, const Dataset& data, std::span<const std::int32_t> indices,
                          int batch_size) {
  GateWorkspace gws;
  GateMask mask;
  Workspace ws;
  Vector sparse;
  return evaluate_batches(data, indices, batch_size, [&](const Matrix& x) -> const Matrix& {
    gate_forward(gate, x, false, gws);
    gate_mask(gating, gws.g, budget, mask);
    scale_blocks(gating, mask.coef, theta, sparse);
    return model.logits(sparse, x, ws);
  });
}

std::vector<std::uint8_t> encode_blocks(const BlockGating& gating, const Vector& update,
                                        std::span<const std::uint8_t> used) {
  const auto& blocks = gating.blocks();
  const std::size_t bitmap = (blocks.size() + 7) / 8;
  std::int64_t values = 0;
  for (std::size_t j = 0; j < blocks.size(); ++j)
    if (used[j]) values += blocks[j].size;
  std::vector<std::uint8_t> out(bitmap + static_cast<std::size_t>(values) * sizeof(float), 0);
  std::size_t at = bitmap;
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    if (!used[j]) continue;
    out[j / 8] |= static_cast<std::uint8_t>(1u << (j % 8));
    const std::size_t bytes = static_cast<std::size_t>(blocks[j].size) * sizeof(float);
    std::memcpy(out.data() + at, update.data() + blocks[j].offset, bytes);
    at += bytes;
  }
  return out;
}

Vector decode_blocks(const BlockGating& gating, std::span<const std::uint8_t> payload) {
  const auto& blocks = gating.blocks();
  const std::size_t bitmap = (blocks.size() + 7) / 8;
  if (payload.size() < bitmap) throw Error("malformed block payload: shorter than its bitmap");
  std::size_t expected = bitmap;
  for (std::size_t j = 0; j < blocks.size(); ++j)
    if (payload[j / 8] >> (j % 8) & 1u) expected += static_cast<std::size_t>(blocks[j].size) * sizeof(float);
  if (payload.size() != expected)
    throw Error("malformed block payload: " + std::to_string(payload.size()) + " bytes where its bitmap says " +
                std::to_string(expected));
  Vector out = Vector::Zero(gating.model_params());
  std::size_t at = bitmap;
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    if (!(payload[j / 8] >> (j % 8) & 1u)) continue;
    const std::size_t bytes = static_cast<std::size_t>(blocks[j].size) * sizeof(float);
    std::memcpy(out.data() + blocks[j].offset, payload.data() + at, bytes);
    at += bytes;
  }
  return out;
}

}  // namespace starling
