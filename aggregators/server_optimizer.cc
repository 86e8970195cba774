#include "aggregators/server_optimizer.h"

namespace starling {

namespace {
class ServerSgd final : public ServerOptimizer {
 public:
  explicit ServerSgd(float lr) : lr_(lr) {}
  void apply(Vector& model, const Vector& update) override { model += lr_ * update; }

 private:
  float lr_;
};
}  // namespace

ServerOptimizerRegistry& server_optimizer_registry() {
  static ServerOptimizerRegistry registry = [] {
    ServerOptimizerRegistry r("server optimizer");
    r.add("sgd", "model += lr * mean update (lr 1.0 is plain FedAvg)", [](Section& s) {
      return std::make_unique<ServerSgd>(static_cast<float>(s.get_double("lr", 1.0, 0.0, 1e6, true)));
    });
    return r;
  }();
  return registry;
}

}  // namespace starling
