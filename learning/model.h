// Models over ONE flat parameter vector: each layer's weights are Eigen::Map views into it,
// so aggregation and compression see a single contiguous span.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

// Scratch buffers of one forward/backward pass; reuse it across batches to avoid allocation.
// Activations are batch x units (one row per sample), as in PyTorch.
struct Workspace {
  std::vector<Matrix> z;  // pre-activations per layer
  std::vector<Matrix> a;  // activations per hidden layer
  Matrix delta, delta_prev;
  Eigen::VectorXf row_max, row_sum;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::int64_t num_params() const = 0;
  // Fresh parameters (PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
  virtual Vector init(Rng& rng) const = 0;
  // Mean softmax cross-entropy over the batch (columns of x) and its gradient.
  virtual double loss_and_gradient(const Vector& params, const Eigen::Ref<const Matrix>& x,
                                   std::span<const std::int32_t> y, Vector& grad, Workspace& ws) const = 0;
  // Class scores (batch x classes), kept in ws.z.back().
  virtual const Matrix& logits(const Vector& params, const Eigen::Ref<const Matrix>& x, Workspace& ws) const = 0;
  // Floating-point operations of one forward+backward pass per sample (for GFLOP/s reports).
  virtual double flops_per_sample() const = 0;
  // The parameter tensors (weights, biases) as ranges of the flat vector, in order.
  using Tensor = TensorShape;
  virtual std::vector<Tensor> tensors() const = 0;
};

// Fully connected ReLU network inputs -> hidden... -> classes; no hidden layer is logistic regression.
class Mlp final : public Model {
 public:
  Mlp(int inputs, std::vector<int> hidden, int classes);
  std::int64_t num_params() const override { return num_params_; }
  Vector init(Rng& rng) const override;
  double loss_and_gradient(const Vector& params, const Eigen::Ref<const Matrix>& x, std::span<const std::int32_t> y,
                           Vector& grad, Workspace& ws) const override;
  const Matrix& logits(const Vector& params, const Eigen::Ref<const Matrix>& x, Workspace& ws) const override;
  double flops_per_sample() const override;
  std::vector<Tensor> tensors() const override;

 private:
  struct Layer {
    int in, out;
    // W^T (in x out, column-major) then the bias: with samples as rows, both the forward
    // product and the weight gradient then have the long dimension as GEMM rows.
    std::int64_t w_offset, b_offset;
  };
  void forward(const Vector& params, const Eigen::Ref<const Matrix>& x, Workspace& ws) const;
  std::vector<Layer> layers_;
  std::int64_t num_params_ = 0;
};

// Models by name: factory(model section, input features, classes).
using ModelRegistry = Registry<Model, Section&, int, int>;
ModelRegistry& model_registry();

}  // namespace starling
