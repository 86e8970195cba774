#include "learning/variance_correction.h"

#include <cmath>

namespace starling {

namespace {
// Mean and variance (over all entries) of a segment, accumulated in double.
std::pair<double, double> moments(const Eigen::Ref<const Vector>& v) {
  const double mean = v.cast<double>().mean();
  const double var = (v.cast<double>().array() - mean).square().mean();
  return {mean, var};
}
}  // namespace

void correct_variance(Vector& mixed, std::span<const Vector* const> received, const std::vector<Model::Tensor>& tensors,
                      double eps) {
  if (received.empty()) return;
  for (const auto& t : tensors) {
    if (t.size <= 1) continue;
    double target = 0.0;
    for (const Vector* r : received) target += moments(r->segment(t.offset, t.size)).second;
    target /= static_cast<double>(received.size());
    auto seg = mixed.segment(t.offset, t.size);
    const auto [mean, var] = moments(seg);
    const auto scale = static_cast<float>(std::sqrt((target + eps) / (var + eps)));
    seg = ((seg.array() - static_cast<float>(mean)) * scale + static_cast<float>(mean)).matrix();
  }
}

}  // namespace starling
