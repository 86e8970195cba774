#include "learning/zeroth_order.h"

#include <algorithm>
#include <cmath>

namespace starling::zo {

void perturbation(std::uint64_t seed, int iteration, NodeId node, int s, Vector& z) {
  Rng rng = Rng(seed, node, Purpose::kPerturbation)
                .substream(static_cast<std::uint64_t>(iteration))
                .substream(static_cast<std::uint64_t>(s));
  for (Eigen::Index i = 0; i < z.size(); ++i) z[i] = static_cast<float>(rng.normal());
}

std::vector<std::int32_t> minibatch(const Rng& node_shuffle, int iteration, int s,
                                    std::span<const std::int32_t> partition, int batch_size) {
  Rng rng = node_shuffle.substream(static_cast<std::uint64_t>(iteration)).substream(static_cast<std::uint64_t>(s));
  const auto n = static_cast<std::int32_t>(partition.size());
  std::vector<std::int32_t> batch = rng.sample_without_replacement(n, std::min(n, batch_size));
  for (auto& i : batch) i = partition[static_cast<std::size_t>(i)];
  return batch;
}

ProjectedGradient projected_gradient(const Model& model, const Vector& theta, const Vector& z, double eps,
                                     const Dataset& data, std::span<const std::int32_t> batch, Scratch& scratch) {
  if (batch.empty()) return {};
  data.gather(batch, scratch.features);
  scratch.labels.resize(batch.size());
  for (std::size_t j = 0; j < batch.size(); ++j) scratch.labels[j] = data.y[static_cast<std::size_t>(batch[j])];
  scratch.grad.resize(theta.size());  // loss_and_gradient's gradient is not needed, only its loss
  const auto e = static_cast<float>(eps);
  scratch.shifted = theta + e * z;
  const double plus = model.loss_and_gradient(scratch.shifted, scratch.features, scratch.labels, scratch.grad, scratch.ws);
  scratch.shifted = theta - e * z;
  const double minus = model.loss_and_gradient(scratch.shifted, scratch.features, scratch.labels, scratch.grad, scratch.ws);
  return {static_cast<float>((plus - minus) / (2.0 * eps)), (plus + minus) / 2.0};
}

void apply_projected_gradients(Vector& theta, Optimizer& optimizer, std::uint64_t seed, int iteration,
                               int perturbations, std::span<const float> grads, Vector& z, Vector& direction) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(grads.size()));
  z.resize(theta.size());
  direction = Vector::Zero(theta.size());
  for (std::size_t k = 0; k < grads.size(); ++k) {
    const auto node = static_cast<NodeId>(k / static_cast<std::size_t>(perturbations));
    const int s = static_cast<int>(k % static_cast<std::size_t>(perturbations));
    perturbation(seed, iteration, node, s, z);
    direction += static_cast<float>(scale * grads[k]) * z;  // element-wise: the same bits on every replica
  }
  optimizer.step(theta, direction);
}

namespace {
constexpr int kMaxExponent = 63;  // |p| <= 63 leaves 7 bits for p + 64 in [1, 127] and 0 for zero
constexpr double kResolution = 16.0;
}  // namespace

std::uint8_t quantize_log(float g) {
  if (g == 0.0f || std::isnan(g)) return 0;
  const double p = std::clamp(std::round(kResolution * std::log(std::fabs(static_cast<double>(g)))),
                              double{-kMaxExponent}, double{kMaxExponent});  // clamps +-inf too
  const auto magnitude = static_cast<std::uint8_t>(static_cast<int>(p) + kMaxExponent + 1);
  return static_cast<std::uint8_t>((std::signbit(g) ? 0x80 : 0x00) | magnitude);
}

float dequantize_log(std::uint8_t code) {
  const int magnitude = code & 0x7f;
  if (magnitude == 0) return 0.0f;
  const auto value = static_cast<float>(std::exp((magnitude - kMaxExponent - 1) / kResolution));
  return code & 0x80 ? -value : value;
}

}  // namespace starling::zo
