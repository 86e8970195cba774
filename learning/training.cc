#include "learning/training.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <vector>

namespace starling {

std::int64_t for_each_minibatch(const Dataset& data, std::span<const std::int32_t> indices, int epochs, int batch_size,
                                Rng& rng, std::int64_t max_batches, const MinibatchStep& step) {
  std::int64_t batches = 0;
  if (indices.empty()) return 0;
  std::vector<std::int32_t> order(indices.begin(), indices.end());
  std::vector<std::int32_t> labels(static_cast<std::size_t>(batch_size));
  Matrix batch;
  for (int e = 0; e < epochs && (max_batches == 0 || batches < max_batches); ++e) {
    rng.shuffle(std::span(order));
    for (std::size_t start = 0; start < order.size() && (max_batches == 0 || batches < max_batches);
         start += static_cast<std::size_t>(batch_size), ++batches) {
      const auto n = std::min(order.size() - start, static_cast<std::size_t>(batch_size));
      const std::span<const std::int32_t> members(order.data() + start, n);
      data.gather(members, batch);
      for (std::size_t j = 0; j < n; ++j) labels[j] = data.y[static_cast<std::size_t>(members[j])];
      step(batch, std::span<const std::int32_t>(labels.data(), n));
    }
  }
  return batches;
}

TrainStats train_local(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int epochs, int batch_size, Rng& rng, Vector& params,
                       std::int64_t max_batches, const GradientTerms& terms) {
  TrainStats stats;
  if (indices.empty()) return stats;
  Vector grad(model.num_params());
  Workspace ws;
  double loss_sum = 0.0;
  stats.batches = for_each_minibatch(
      data, indices, epochs, batch_size, rng, max_batches,
      [&](const Matrix& batch, std::span<const std::int32_t> labels) {
        const auto n = static_cast<std::int64_t>(labels.size());
        loss_sum += static_cast<double>(n) * model.loss_and_gradient(params, batch, labels, grad, ws);
        if (terms.prox_mu != 0.0f) grad += terms.prox_mu * (params - *terms.anchor);
        if (terms.correction) grad += *terms.correction;
        optimizer.step(params, grad);
        stats.samples += n;
      });
  stats.mean_loss = loss_sum / static_cast<double>(stats.samples);
  return stats;
}

TrainStats train_sarah(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int batch_size, Rng& rng, Vector& params, Vector& v,
                       std::int64_t steps) {
  TrainStats stats;
  if (indices.empty() || steps <= 0) return stats;
  Vector grad(model.num_params()), grad_prev(model.num_params()), prev = params, step_dir;
  Workspace ws;
  double loss_sum = 0.0;
  stats.batches = for_each_minibatch(
      data, indices, 1 << 30, batch_size, rng, steps, [&](const Matrix& batch, std::span<const std::int32_t> labels) {
        const auto n = static_cast<std::int64_t>(labels.size());
        loss_sum += static_cast<double>(n) * model.loss_and_gradient(params, batch, labels, grad, ws);
        if (stats.samples > 0) {  // after the first step y_prev != y: the SARAH correction
          model.loss_and_gradient(prev, batch, labels, grad_prev, ws);
          v += grad - grad_prev;
        }
        prev = params;
        step_dir = v;  // the optimizer may change its gradient argument (weight decay)
        optimizer.step(params, step_dir);
        stats.samples += n;
      });
  stats.mean_loss = loss_sum / static_cast<double>(stats.samples);
  return stats;
}

double batch_gradient(const Model& model, const Dataset& data, std::span<const std::int32_t> samples,
                      const Vector& params, Vector& grad, int chunk) {
  grad = Vector::Zero(model.num_params());
  if (samples.empty()) return 0.0;
  Vector part(model.num_params());
  Matrix features;
  std::vector<std::int32_t> labels;
  Workspace ws;
  double loss_sum = 0.0;
  for (std::size_t start = 0; start < samples.size(); start += static_cast<std::size_t>(chunk)) {
    const auto n = std::min(samples.size() - start, static_cast<std::size_t>(chunk));
    const auto members = samples.subspan(start, n);
    data.gather(members, features);
    labels.resize(n);
    for (std::size_t j = 0; j < n; ++j) labels[j] = data.y[static_cast<std::size_t>(members[j])];
    loss_sum += static_cast<double>(n) * model.loss_and_gradient(params, features, labels, part, ws);
    grad += static_cast<float>(n) * part;  // sums of chunk gradients, divided once at the end
  }
  const auto total = static_cast<double>(samples.size());
  grad /= static_cast<float>(total);
  return loss_sum / total;
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
