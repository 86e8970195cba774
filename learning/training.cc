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

void score_logits(const Matrix& z, std::span<const std::int32_t> labels, EvalCounts& counts) {
  for (Eigen::Index j = 0; j < z.rows(); ++j) {
    const auto label = labels[static_cast<std::size_t>(j)];
    Eigen::Index best;
    const float m = z.row(j).maxCoeff(&best);
    counts.loss_sum += std::log(static_cast<double>((z.row(j).array() - m).exp().sum())) + m - z(j, label);
    counts.correct += best == label;
  }
  counts.samples += z.rows();
}

EvalResult evaluate(const Model& model, const Vector& params, const Dataset& data) {
  constexpr Eigen::Index kChunk = 500;
  const Eigen::Index n = data.size();
  const Eigen::Index chunks = (n + kChunk - 1) / kChunk;
  std::vector<EvalCounts> counts(static_cast<std::size_t>(chunks));
  struct Scratch {
    Workspace ws;
    Matrix features;
  };
  tbb::enumerable_thread_specific<Scratch> scratch;
  tbb::parallel_for(Eigen::Index{0}, chunks, [&](Eigen::Index c) {
    const Eigen::Index begin = c * kChunk, count = std::min(kChunk, n - begin);
    Scratch& s = scratch.local();
    data.slice(begin, count, s.features);
    score_logits(model.logits(params, s.features, s.ws),
                 std::span(data.y).subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count)),
                 counts[static_cast<std::size_t>(c)]);
  });
  EvalCounts total;
  for (const auto& c : counts) total.add(c);
  return EvalResult{total.accuracy(), total.loss()};
}

EvalCounts evaluate_batches(const Dataset& data, std::span<const std::int32_t> indices, int batch_size,
                            const BatchLogits& logits) {
  EvalCounts counts;
  Matrix batch;
  std::vector<std::int32_t> labels;
  for (std::size_t start = 0; start < indices.size(); start += static_cast<std::size_t>(batch_size)) {
    const auto members = indices.subspan(start, std::min(indices.size() - start, static_cast<std::size_t>(batch_size)));
    data.gather(members, batch);
    labels.clear();
    for (auto i : members) labels.push_back(data.y[static_cast<std::size_t>(i)]);
    score_logits(logits(batch), labels, counts);
  }
  return counts;
}

EvalCounts evaluate_indices(const Model& model, const Vector& params, const Dataset& data,
                            std::span<const std::int32_t> indices, int batch_size) {
  Workspace ws;
  return evaluate_batches(data, indices, batch_size, [&](const Matrix& x) -> const Matrix& { return model.logits(params, x, ws); });
}

}  // namespace starling
