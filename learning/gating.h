// pFedGate's personalized sparse gating (Chen et al., ICML 2023; shared/algorithms.md card 1).
//
// The flat model is cut into blocks: B sub-blocks per parameter tensor. A client's private gating
// layer maps a minibatch to one score per block, g in (0,1)^L; a greedy knapsack under the
// client's budget s keeps some blocks (the first sub-block of every tensor always), and the batch
// is trained through the sparse model theta~ = (m_j g_j theta_j)_j. Gradients reach the gate
// through g and through the straight-through estimator m = 1 - stopgrad(g^) + g^ on kept blocks.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/rng.h"
#include "learning/dataset.h"
#include "learning/model.h"
#include "learning/optimizer.h"
#include "learning/training.h"

namespace starling {

// `size` parameters of the flat model from `offset`.
struct GateBlock {
  std::int64_t offset = 0, size = 0;
  bool first = false;  // the first sub-block of its tensor: always kept
  int group = 0;       // 0: linear layers, 1: the rest (knapsack capacities are per group)
};

// The fixed block decomposition of a model and the knapsack over it.
class BlockGating {
 public:
  // Tensors in declaration order, each cut into `blocks_per_tensor` sub-blocks of ceil(numel/B)
  // entries (the last may be shorter; a tensor with numel < B gets one block per entry). Every
  // tensor of our models (logreg, mlp) belongs to a fully connected layer, so all blocks are in the
  // linear group and the non-linear group is empty. `features`: the gate's input size.
  BlockGating(const Model& model, int blocks_per_tensor, int features);

  const std::vector<GateBlock>& blocks() const { return blocks_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int blocks_per_tensor() const { return blocks_per_tensor_; }
  int features() const { return features_; }
  std::int64_t model_params() const { return model_params_; }
  // Parameters of the gating layer: Linear (F + 1) x L, BatchNorm's gamma and beta.
  std::int64_t gate_params() const { return (std::int64_t{features_} + 3) * num_blocks(); }
  // s_min = min(max(1/B, 0.1), s): the floor of the scores, and the part of the budget spent on
  // the first sub-blocks.
  double min_fraction(double budget) const;
  // Greedy knapsack (the reference code's found_max_value_greedy): per group, items = the blocks
  // that are not first sub-blocks, value = round(10 max(g_j, s_min)), weight = block size,
  // capacity = round((s - s_min) x sum of the items' weights); items are visited by value,
  // descending (ties: block order) and taken when they still fit. keep[j] = 1 for every first
  // sub-block and every item taken. With s = 1 every block is kept. Returns the kept parameters.
  std::int64_t select(std::span<const float> scores, double budget, std::vector<std::uint8_t>& keep) const;
  // An upper bound of select()'s kept parameters for any scores: the first sub-blocks plus each
  // group's capacity (all parameters when s = 1).
  std::int64_t max_kept(double budget) const;
  // Floating-point operations per sample of the gate's forward and parameter gradient (2 GEMMs
  // of F x L; the batch-norm and sigmoid are O(L) and ignored).
  double gate_flops_per_sample() const { return 4.0 * features_ * num_blocks(); }

 private:
  std::vector<GateBlock> blocks_;
  std::int64_t model_params_ = 0;
  int blocks_per_tensor_, features_;
};

// A client's private gating layer: per-feature standardisation -> Linear(F -> L) ->
// BatchNorm1d(L) -> sigmoid -> mean over the batch. The standardisation (x - mean) / sqrt(var +
// 0.01), with the mean and variance of the client's own training samples, stands in for the
// paper's SwitchNorm2d on our flat inputs.
struct Gate {
  Vector params;                              // W (F x L, column-major), b (L), gamma (L), beta (L)
  Eigen::VectorXf running_mean, running_var;  // BatchNorm1d's (momentum 0.1), used for evaluation
  Eigen::VectorXf input_mean, input_scale;    // the standardisation: u = (x - mean) * scale
};

// A fresh gate: W, b ~ U(-1/sqrt(F), 1/sqrt(F)) (nn.Linear's default), gamma = 1, beta = 0,
// running mean 0 and variance 1; standardised by the statistics of `indices` of `data`.
Gate make_gate(const BlockGating& gating, const Dataset& data, std::span<const std::int32_t> indices, Rng& init);

// Scratch of one gate pass; `g` holds the scores of the last forward.
struct GateWorkspace {
  Matrix u;                       // standardised inputs, F x batch
  Matrix h, hn, s, dh;            // batch x L: pre-norm, normalised, sigmoid output, gradient
  Eigen::VectorXf mean, var, inv_std;
  Eigen::VectorXf g;
  bool train = false;
};

// g = mean over the batch (columns of x) of sigmoid(BN(Linear(standardise(x)))). `train`: batch
// statistics (biased variance), as in training; otherwise the running statistics.
void gate_forward(const Gate& gate, const Eigen::Ref<const Matrix>& x, bool train, GateWorkspace& ws);
// After a training forward: running = 0.9 running + 0.1 batch (unbiased variance), as PyTorch.
void gate_update_running(Gate& gate, const GateWorkspace& ws);
// The gradient (size of gate.params) of a loss whose gradient with respect to g is `dg`, through
// the last forward (which must have been a training one).
void gate_backward(const Gate& gate, const Eigen::VectorXf& dg, GateWorkspace& ws, Vector& grad);

// The sparse model of one batch: coef[j] = m_j g_j scales block j (0 when dropped); dcoef[j] =
// d coef_j / d g_j through the straight-through estimator: m_j (1 + g_j [g_j >= s_min]) when
// s < 1 (coef = g (1 - stopgrad(g^) + g^) m), and 1 when s = 1 (coef = g, every block kept).
struct GateMask {
  std::vector<std::uint8_t> keep;
  Eigen::VectorXf coef, dcoef;
  std::int64_t kept = 0;
};
void gate_mask(const BlockGating& gating, const Eigen::VectorXf& g, double budget, GateMask& mask);
// out = theta with block j scaled by coef[j].
void scale_blocks(const BlockGating& gating, const Eigen::VectorXf& coef, const Vector& theta, Vector& out);

// Scratch of a gated training step.
struct GatedWorkspace {
  GateWorkspace gate;
  GateMask mask;
  Workspace model;
  Vector sparse, grad_sparse;
};

// Mean cross-entropy of the gated sparse model on batch (x, labels), with the gate in training
// mode, and the gradients with respect to theta (coef . grad of the sparse model) and the gate's
// parameters (through g and the straight-through estimator). Running statistics are not touched.
double gated_loss_and_gradients(const Model& model, const BlockGating& gating, const Gate& gate, double budget,
                                const Vector& theta, const Eigen::Ref<const Matrix>& x,
                                std::span<const std::int32_t> labels, Vector& grad_theta, Vector& grad_gate,
                                GatedWorkspace& ws);

// Scales `grad` to norm `max_norm` when it is longer (torch.nn.utils.clip_grad_norm_; 0: no clip).
void clip_norm(Vector& grad, float max_norm);

struct GatedTraining {
  double budget = 1.0;
  float gate_lr = 0.1f;
  float clip = 10.0f;        // max gradient norm, for theta and for the gate separately (0: none)
  bool train_model = true;   // false: only the gate learns (theta frozen)
};
struct GatedStats {
  TrainStats train;
  std::int64_t kept_sum = 0;          // kept parameters summed over the batches
  std::vector<std::uint8_t> used;     // blocks kept in at least one batch
  std::int64_t used_params = 0;       // their parameters
};
// Joint local training (the reference code's bi_level_opt = 0): per minibatch, the gradients of
// gated_loss_and_gradients are clipped (each to `clip`), the gate takes a plain SGD step of
// gate_lr and theta a step of `optimizer`; the gate's running statistics are updated. Batches as
// in train_local (epochs over `indices` reshuffled by `rng`, at most max_batches when > 0).
GatedStats train_gated(const Model& model, const BlockGating& gating, Gate& gate, const GatedTraining& settings,
                       Optimizer& optimizer, const Dataset& data, std::span<const std::int32_t> indices, int epochs,
                       int batch_size, Rng& rng, Vector& theta, std::int64_t max_batches = 0);

// The client's personalized model on `indices` (in order, batches of `batch_size`): per batch the
// gate in evaluation mode picks and scales the blocks of theta.
EvalCounts evaluate_gated(const Model& model, const BlockGating& gating, const Gate& gate, double budget,
                          const Vector& theta, const Dataset& data, std::span<const std::int32_t> indices,
                          int batch_size);

// The update of the blocks in `used` as bytes: a bitmap of the L blocks (ceil(L/8) bytes, bit j of
// byte j/8 set for a used block) followed by each used block's values as little-endian float32.
std::vector<std::uint8_t> encode_blocks(const BlockGating& gating, const Vector& update, std::span<const std::uint8_t> used);
// The inverse: unused blocks decode as 0. Throws Error on a payload of the wrong size.
Vector decode_blocks(const BlockGating& gating, std::span<const std::uint8_t> payload);

}  // namespace starling
