#include "learning/training.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <vector>

namespace starling {

TrainStats train_local(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int epochs, int batch_size, Rng& rng, Vector& params) {
  TrainStats stats;
  if (indices.empty()) return stats;
  std::vector<std::int32_t> order(indices.begin(), indices.end());
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch_size));
  Matrix batch(data.num_features(), batch_size);
  Vector grad(model.num_params());
  Workspace ws;
  double loss_sum = 0.0;
  for (int e = 0; e < epochs; ++e) {
    rng.shuffle(std::span(order));
    for (std::size_t start = 0; start < order.size(); start += static_cast<std::size_t>(batch_size)) {
      const auto n = static_cast<Eigen::Index>(std::min(order.size() - start, static_cast<std::size_t>(batch_size)));
      if (batch.cols() != n) batch.resize(Eigen::NoChange, n);
      for (Eigen::Index j = 0; j < n; ++j) {
        const auto i = order[start + static_cast<std::size_t>(j)];
        batch.col(j) = data.x.col(i);
        labels[static_cast<std::size_t>(j)] = data.y[static_cast<std::size_t>(i)];
      }
      loss_sum += n * model.loss_and_gradient(params, batch, std::span(labels.data(), static_cast<std::size_t>(n)), grad, ws);
      optimizer.step(params, grad);
      stats.samples += n;
    }
  }
  stats.mean_loss = loss_sum / static_cast<double>(stats.samples);
  return stats;
}

EvalResult evaluate(const Model& model, const Vector& params, const Dataset& data) {
  constexpr Eigen::Index kChunk = 500;
  const Eigen::Index n = data.size();
  const Eigen::Index chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> loss(static_cast<std::size_t>(chunks));
  std::vector<std::int64_t> correct(static_cast<std::size_t>(chunks));
  tbb::enumerable_thread_specific<Workspace> workspaces;
  tbb::parallel_for(Eigen::Index{0}, chunks, [&](Eigen::Index c) {
    const Eigen::Index begin = c * kChunk, count = std::min(kChunk, n - begin);
    const Matrix& z = model.logits(params, data.x.middleCols(begin, count), workspaces.local());
    double l = 0.0;
    std::int64_t hits = 0;
    for (Eigen::Index j = 0; j < count; ++j) {
      const auto label = data.y[static_cast<std::size_t>(begin + j)];
      Eigen::Index best;
      const float m = z.col(j).maxCoeff(&best);
      l += std::log(static_cast<double>((z.col(j).array() - m).exp().sum())) + m - z(label, j);
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
