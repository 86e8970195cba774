// Local training and evaluation: the real computation behind every simulated compute job.
#pragma once
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

}  // namespace starling
