// Zeroth-order (SPSA / MeZO) training with shared randomness ("Just One Byte", card 5).
//
// A node estimates the directional derivative of the loss along a random direction z from two
// forward passes and shares only that scalar; every replica regenerates z from a seed known to
// all, so applying the same scalars in the same order keeps the replicas bit-identical. These are
// plain functions so that a centralised loop (tests) can repeat exactly what the protocol does.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/rng.h"
#include "learning/dataset.h"
#include "learning/model.h"
#include "learning/optimizer.h"

namespace starling::zo {

// z ~ N(0, I_d) of node `node`'s s-th projected gradient at `iteration`: drawn from the stream
// Rng(seed, node, kPerturbation).substream(iteration).substream(s), so any node can regenerate it.
void perturbation(std::uint64_t seed, int iteration, NodeId node, int s, Vector& z);

// The minibatch behind node j's s-th projected gradient at `iteration`: min(batch_size, |partition|)
// distinct samples of its partition, drawn from node_shuffle.substream(iteration).substream(s),
// where node_shuffle is the node's Rng(seed, j, kDataShuffle) stream (left untouched).
std::vector<std::int32_t> minibatch(const Rng& node_shuffle, int iteration, int s,
                                    std::span<const std::int32_t> partition, int batch_size);

// Scratch buffers of projected_gradient; reuse across calls to avoid allocation.
struct Scratch {
  Vector shifted, grad;
  Matrix features;
  std::vector<std::int32_t> labels;
  Workspace ws;
};

struct ProjectedGradient {
  float g = 0.0f;      // (L(theta + eps z) - L(theta - eps z)) / (2 eps), rounded to fp32
  double loss = 0.0;   // (L(theta + eps z) + L(theta - eps z)) / 2: the minibatch's loss near theta
};

// SPSA along z on one minibatch (the same samples for both losses); 0 for an empty batch.
ProjectedGradient projected_gradient(const Model& model, const Vector& theta, const Vector& z, double eps,
                                     const Dataset& data, std::span<const std::int32_t> batch, Scratch& scratch);

// Applies one iteration: direction = sum_k grads[k] * z_k / sqrt(N), accumulated in canonical order
// (grads[j * perturbations + s] is node j's s-th value, N = grads.size()), then one optimizer step.
// With plain SGD that is the card's theta <- theta - (lr / sqrt(N)) * g * z for every (j, s);
// momentum and weight decay, if configured, act once per iteration. `z` and `direction` are scratch.
void apply_projected_gradients(Vector& theta, Optimizer& optimizer, std::uint64_t seed, int iteration,
                               int perturbations, std::span<const float> grads, Vector& z, Vector& direction);

// The 1-byte log-magnitude code: bit 7 = sign, low 7 bits = p + 64 with
// p = clamp(round(16 ln|g|), -63, 63) (|g| in [e^-3.94, e^3.94] at 1/16 log resolution);
// low bits 0 = exactly zero (also what a NaN becomes: it carries no direction).
std::uint8_t quantize_log(float g);
float dequantize_log(std::uint8_t code);

}  // namespace starling::zo
