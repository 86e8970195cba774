// Local training and evaluation: the real computation behind every simulated compute job.
#pragma once
#include <functional>
#include <span>

#include "core/rng.h"
#include "learning/dataset.h"
#include "learning/model.h"
#include "learning/optimizer.h"

namespace starling {

struct TrainStats {
  std::int64_t samples = 0;  // samples processed (epochs x partition size)
  std::int64_t batches = 0;  // optimizer steps taken (SCAFFOLD divides by them)
  double mean_loss = 0.0;    // mean minibatch loss, weighted by batch size
};

// Terms added to every minibatch gradient before the optimizer step; both cost nothing when unset.
struct GradientTerms {
  float prox_mu = 0.0f;                // FedProx: grad += prox_mu * (params - *anchor)
  const Vector* anchor = nullptr;      // the global model the client started from
  const Vector* correction = nullptr;  // SCAFFOLD: grad += c - c_i
};

// `epochs` passes over `indices` in minibatches of `batch_size`, reshuffled each epoch with `rng`;
// with max_batches > 0, training stops after that many minibatches (epochs then only bounds it).
TrainStats train_local(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int epochs, int batch_size, Rng& rng, Vector& params,
                       std::int64_t max_batches = 0, const GradientTerms& terms = {});

// The minibatch loop every local trainer shares: `epochs` passes over `indices`, reshuffled each
// with `rng`, in minibatches of `batch_size` (the last of an epoch is short), stopping after
// max_batches when > 0. `step` gets each minibatch's features (one sample per column, as
// Dataset::gather) and labels. Returns the minibatches visited.
using MinibatchStep = std::function<void(const Matrix& features, std::span<const std::int32_t> labels)>;
std::int64_t for_each_minibatch(const Dataset& data, std::span<const std::int32_t> indices, int epochs, int batch_size,
                                Rng& rng, std::int64_t max_batches, const MinibatchStep& step);

// FedAMD's miner (card 8.1): `steps` SARAH-style steps from `params` (= x) with the direction `v`
// (v_glob on entry). On each minibatch xi of the same loop as train_local (one epoch after another):
//     v += grad F(y; xi) - grad F(y_prev; xi);   y_prev = y;   y <- optimizer step along v
// (with plain SGD, y <- y - lr v). The first step's two points coincide, so it takes v as given and
// costs one gradient; every later step costs two. mean_loss is that of F(y; xi).
TrainStats train_sarah(const Model& model, Optimizer& optimizer, const Dataset& data,
                       std::span<const std::int32_t> indices, int batch_size, Rng& rng, Vector& params, Vector& v,
                       std::int64_t steps);

// The mean loss gradient over all of `samples` at `params`, into `grad`; returns the mean loss.
// Computed in chunks of at most `chunk` samples whose sums are added in order (a large batch
// needs no whole-batch matrix).
double batch_gradient(const Model& model, const Dataset& data, std::span<const std::int32_t> samples,
                      const Vector& params, Vector& grad, int chunk = 1024);

// Samples processed by `batches` minibatches of `batch_size` over epochs of `n` samples (the last
// batch of an epoch is short): what a compute job of that many steps costs.
std::int64_t samples_in_batches(std::int64_t n, int batch_size, std::int64_t batches);

struct EvalResult {
  double accuracy = 0.0;
  double loss = 0.0;
};

// Accuracy and mean loss over the whole dataset, in parallel over fixed chunks whose partial
// sums are added in chunk order: the result does not depend on the thread count.
EvalResult evaluate(const Model& model, const Vector& params, const Dataset& data);

// Correct predictions and summed cross-entropy over some samples.
struct EvalCounts {
  std::int64_t samples = 0, correct = 0;
  double loss_sum = 0.0;
  void add(const EvalCounts& other) {
    samples += other.samples, correct += other.correct, loss_sum += other.loss_sum;
  }
  double accuracy() const { return samples > 0 ? static_cast<double>(correct) / static_cast<double>(samples) : 0.0; }
  double loss() const { return samples > 0 ? loss_sum / static_cast<double>(samples) : 0.0; }
};
// Adds a batch's class scores (batch x classes, one row per sample) against its labels.
void score_logits(const Matrix& logits, std::span<const std::int32_t> labels, EvalCounts& counts);
// Scores `logits(features)` (batch x classes) on the samples `indices` of `data`, in order, in
// batches of `batch_size` (features one sample per column), in this thread.
using BatchLogits = std::function<const Matrix&(const Matrix& features)>;
EvalCounts evaluate_batches(const Dataset& data, std::span<const std::int32_t> indices, int batch_size,
                            const BatchLogits& logits);
// `params` on the samples `indices` of `data`, in order, in batches of `batch_size`, in this thread.
EvalCounts evaluate_indices(const Model& model, const Vector& params, const Dataset& data,
                            std::span<const std::int32_t> indices, int batch_size);

}  // namespace starling
