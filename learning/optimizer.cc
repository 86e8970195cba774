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
    r.add(PluginSpec("sgd", "minibatch SGD with optional momentum and weight decay")
              .number("lr", 0.05, Range::above_until(0, 1e6), "local learning rate")
              .number("momentum", 0.0, Range::between(0, 1), "heavy-ball momentum (reset for each local job)")
              .number("weight_decay", 0.0, Range::at_least(0), "L2 coefficient added to the gradient"),
          [](Section& s) {
      const double lr = s.number("lr");
      const double momentum = s.number("momentum");
      const double wd = s.number("weight_decay");
      return std::make_unique<Sgd>(lr, momentum, wd);
    });
    return r;
  }();
  return registry;
}

}  // namespace starling
