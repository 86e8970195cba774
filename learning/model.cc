#include "learning/model.h"

#include "learning/gemm.h"

#include <cmath>

namespace starling {

namespace {
using ConstMap = Eigen::Map<const Matrix>;
using MutMap = Eigen::Map<Matrix>;
}  // namespace

Mlp::Mlp(int inputs, std::vector<int> hidden, int classes) {
  int in = inputs;
  hidden.push_back(classes);
  for (int out : hidden) {
    layers_.push_back({in, out, num_params_, num_params_ + std::int64_t{in} * out});
    num_params_ += std::int64_t{in} * out + out;
    in = out;
  }
}

Vector Mlp::init(Rng& rng) const {
  Vector p(num_params_);
  for (const auto& l : layers_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(l.in));
    for (std::int64_t i = l.w_offset; i < l.b_offset + l.out; ++i)
      p[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  }
  return p;
}

void Mlp::forward(const Vector& params, const Eigen::Ref<const Matrix>& x, Workspace& ws) const {
  const std::size_t n_layers = layers_.size();
  ws.z.resize(n_layers);
  ws.a.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l) {
    const Layer& L = layers_[l];
    ConstMap wt(params.data() + L.w_offset, L.in, L.out);
    Eigen::Map<const Eigen::RowVectorXf> b(params.data() + L.b_offset, L.out);
    Matrix& z = ws.z[l];
    if (l == 0) {  // x holds one sample per column
      z.resize(x.cols(), L.out);
      gemm(Op::kTranspose, x, Op::kNone, wt, z);
    } else {
      z.resize(ws.a[l - 1].rows(), L.out);
      gemm(Op::kNone, ws.a[l - 1], Op::kNone, wt, z);
    }
    z.rowwise() += b;
    if (l + 1 < n_layers) ws.a[l] = z.cwiseMax(0.0f);
  }
}

const Matrix& Mlp::logits(const Vector& params, const Eigen::Ref<const Matrix>& x, Workspace& ws) const {
  forward(params, x, ws);
  return ws.z.back();
}

double Mlp::loss_and_gradient(const Vector& params, const Eigen::Ref<const Matrix>& x, std::span<const std::int32_t> y,
                              Vector& grad, Workspace& ws) const {
  forward(params, x, ws);
  const Eigen::Index batch = x.cols();
  grad.resize(num_params_);
  // Softmax cross-entropy: delta = (softmax - onehot) / batch, row by row.
  const Matrix& z = ws.z.back();
  Matrix& delta = ws.delta;
  ws.row_max = z.rowwise().maxCoeff();
  delta = (z.colwise() - ws.row_max).array().exp();
  ws.row_sum = delta.rowwise().sum();
  double loss = 0.0;
  for (Eigen::Index j = 0; j < batch; ++j)
    loss += std::log(static_cast<double>(ws.row_sum[j])) + ws.row_max[j] - z(j, y[static_cast<std::size_t>(j)]);
  delta.array().colwise() /= ws.row_sum.array() * static_cast<float>(batch);
  for (Eigen::Index j = 0; j < batch; ++j) delta(j, y[static_cast<std::size_t>(j)]) -= 1.0f / static_cast<float>(batch);
  for (std::size_t l = layers_.size(); l-- > 0;) {
    const Layer& L = layers_[l];
    MutMap gwt(grad.data() + L.w_offset, L.in, L.out);
    Eigen::Map<Eigen::RowVectorXf> gb(grad.data() + L.b_offset, L.out);
    if (l == 0) gemm(Op::kNone, x, Op::kNone, delta, gwt);
    else gemm(Op::kTranspose, ws.a[l - 1], Op::kNone, delta, gwt);
    gb = delta.colwise().sum();
    if (l == 0) break;  // no gradient with respect to the inputs
    ConstMap wt(params.data() + L.w_offset, L.in, L.out);
    ws.delta_prev.resize(delta.rows(), L.in);
    gemm(Op::kNone, delta, Op::kTranspose, wt, ws.delta_prev);
    ws.delta_prev.array() *= (ws.z[l - 1].array() > 0.0f).cast<float>();
    std::swap(ws.delta, ws.delta_prev);
  }
  return loss / static_cast<double>(batch);
}

double Mlp::flops_per_sample() const {
  double f = 0.0;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const double mac = static_cast<double>(layers_[l].in) * layers_[l].out;
    f += 2 * mac /*forward*/ + 2 * mac /*weight gradient*/ + (l > 0 ? 2 * mac : 0.0) /*input gradient*/;
  }
  return f;
}

std::vector<Model::Tensor> Mlp::tensors() const {
  std::vector<Tensor> out;
  for (const auto& l : layers_) {
    out.push_back({l.w_offset, std::int64_t{l.in} * l.out, l.in, l.out});  // W^T: in x out
    out.push_back({l.b_offset, l.out, l.out, 1});
  }
  return out;
}

ModelRegistry& model_registry() {
  static ModelRegistry registry = [] {
    ModelRegistry r("model");
    r.add("logreg", "multinomial logistic regression (softmax over a linear layer)",
          [](Section&, int inputs, int classes) { return std::make_unique<Mlp>(inputs, std::vector<int>{}, classes); });
    r.add(PluginSpec("mlp", "fully connected ReLU network with the given hidden sizes")
              .int_list("hidden", {200, 200}, "hidden layer sizes (the FedAvg paper's 2NN: [200, 200])"),
          [](Section& s, int inputs, int classes) {
      auto hidden = s.int_list("hidden");
      for (int h : hidden)
        if (h <= 0) s.fail("hidden", "every hidden size must be a positive integer");
      return std::make_unique<Mlp>(inputs, hidden, classes);
    });
    return r;
  }();
  return registry;
}

}  // namespace starling
