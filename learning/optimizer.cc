#include "learning/optimizer.h"

namespace starling {

void Sgd::step(Vector& params, Vector& grad) {
  if (weight_decay_ != 0.0f) grad += weight_decay_ * params;
  if (momentum_ != 0.0f) {
    if (buffer_.size() != grad.size()) buffer_ = grad;
    else buffer_ = momentum_ * buffer_ + grad;
    params -= lr_ * buffer_;
  } else {
    params -= lr_ * grad;
  }
}

OptimizerRegistry& optimizer_registry() {
  static OptimizerRegistry registry = [] {
    OptimizerRegistry r("optimizer");
    r.add("sgd", "minibatch SGD with optional momentum and weight decay", [](Section& s) {
      const double lr = s.get_double("lr", 0.05, 0.0, 1e6, true);
      const double momentum = s.get_double("momentum", 0.0, 0.0, 1.0);
      const double wd = s.get_double("weight_decay", 0.0, 0.0);
      return std::make_unique<Sgd>(lr, momentum, wd);
    });
    return r;
  }();
  return registry;
}

}  // namespace starling
