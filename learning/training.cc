#include "learning/training.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <vector>

namespace starling {

TrainStats train_local(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int epochs, int batch_size, Rng& rng, Vector& params,
                       std::int64_t max_batches, const GradientTerms& terms) {
  TrainStats stats;
  std::int64_t batches = 0;
  if (indices.empty()) return stats;
  std::vector<std::int32_t> order(indices.begin(), indices.end());
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch_size));
  Matrix batch;
  Vector grad(model.num_params());
  Workspace ws;
  double loss_sum = 0.0;
  for (int e = 0; e < epochs && (max_batches == 0 || batches < max_batches); ++e) {
    rng.shuffle(std::span(order));
    for (std::size_t start = 0; start < order.size() && (max_batches == 0 || batches < max_batches);
         start += static_cast<std::size_t>(batch_size), ++batches) {
      const auto n = static_cast<Eigen::Index>(std::min(order.size() - start, static_cast<std::size_t>(batch_size)));
      const std::span<const std::int32_t> members(order.data() + start, static_cast<std::size_t>(n));
      data.gather(members, batch);
      for (std::size_t j = 0; j < members.size(); ++j) labels[j] = data.y[static_cast<std::size_t>(members[j])];
      loss_sum += n * model.loss_and_gradient(params, batch, std::span(labels.data(), static_cast<std::size_t>(n)), grad, ws);
      if (terms.prox_mu != 0.0f) grad += terms.prox_mu * (params - *terms.anchor);
      if (terms.correction) grad += *terms.correction;
      optimizer.step(params, grad);
      stats.samples += n;
    }
  }
  stats.batches = batches;
  stats.mean_loss = loss_sum / static_cast<double>(stats.samples);
  return stats;
}

std::int64_t samples_in_batches(std::int64_t n, int batch_size, std::int64_t batches) {
  if (n <= 0) return 0;
  const std::int64_t per_epoch = (n + batch_size - 1) / batch_size;
  const std::int64_t full_epochs = batches / per_epoch, rest = batches % per_epoch;
  return full_epochs * n + std::min(n, rest * batch_size);
}

EvalResult evaluate(const Model& model, const Vector& params, const Dataset& data) {
  constexpr Eigen::Index kChunk = 500;
  const Eigen::Index n = data.size();
  const Eigen::Index chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> loss(static_cast<std::size_t>(chunks));
  std::vector<std::int64_t> correct(static_cast<std::size_t>(chunks));
  struct Scratch {
    Workspace ws;
    Matrix features;
  };
  tbb::enumerable_thread_specific<Scratch> scratch;
  tbb::parallel_for(Eigen::Index{0}, chunks, [&](Eigen::Index c) {
    const Eigen::Index begin = c * kChunk, count = std::min(kChunk, n - begin);
    Scratch& s = scratch.local();
    data.slice(begin, count, s.features);
    const Matrix& z = model.logits(params, s.features, s.ws);
    double l = 0.0;
    std::int64_t hits = 0;
    for (Eigen::Index j = 0; j < count; ++j) {
      const auto label = data.y[static_cast<std::size_t>(begin + j)];
      Eigen::Index best;
      const float m = z.row(j).maxCoeff(&best);
      l += std::log(static_cast<double>((z.row(j).array() - m).exp().sum())) + m - z(j, label);
      hits += best == label;
    }
    loss[static_cast<std::size_t>(c)] = l;
    correct[static_cast<std::size_t>(c)] = hits;
  });
  EvalResult r;
  double loss_sum = 0.0;
  std::int64_t hits = 0;
  for (Eigen::Index c = 0; c < chunks; ++c) loss_sum += loss[static_cast<std::size_t>(c)], hits += correct[static_cast<std::size_t>(c)];
  if (n > 0) r.accuracy = static_cast<double>(hits) / static_cast<double>(n), r.loss = loss_sum / static_cast<double>(n);
  return r;
}

}  // namespace starling
