// Local optimizers. One object per training session: its state (momentum) lives inside.
#pragma once
#include <memory>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step(Vector& params, Vector& grad) = 0;  // may modify grad in place
  virtual double lr() const = 0;  // the step size (SCAFFOLD's control variates divide by it)
  // A fresh optimizer with the same settings and empty state.
  virtual std::unique_ptr<Optimizer> clone() const = 0;
};

// PyTorch's SGD semantics: g += wd * p; buf = momentum * buf + g; p -= lr * buf.
class Sgd final : public Optimizer {
 public:
  Sgd(double lr, double momentum, double weight_decay) : lr_(lr), momentum_(momentum), weight_decay_(weight_decay) {}
  void step(Vector& params, Vector& grad) override;
  double lr() const override { return lr_; }
  std::unique_ptr<Optimizer> clone() const override { return std::make_unique<Sgd>(lr_, momentum_, weight_decay_); }

 private:
  float lr_, momentum_, weight_decay_;
  Vector buffer_;
};

// Optimizers by name: factory(train section), reading lr, momentum, weight_decay.
using OptimizerRegistry = Registry<Optimizer, Section&>;
OptimizerRegistry& optimizer_registry();

}  // namespace starling
