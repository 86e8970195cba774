// Server optimizers apply the aggregated update to the global model (FedOpt's view: the mean
// client update is a pseudo-gradient; plain FedAvg is SGD with lr 1).
#pragma once
#include <memory>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

class ServerOptimizer {
 public:
  virtual ~ServerOptimizer() = default;
  // `update` is the combined client update (client model minus global model).
  virtual void apply(Vector& model, const Vector& update) = 0;
};

using ServerOptimizerRegistry = Registry<ServerOptimizer, Section&>;
ServerOptimizerRegistry& server_optimizer_registry();

}  // namespace starling
