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
// FedAvgM: m <- beta m + update; model += lr m.
class ServerMomentum final : public ServerOptimizer {
 public:
  ServerMomentum(float lr, float beta) : lr_(lr), beta_(beta) {}
  void apply(Vector& model, const Vector& update) override {
    if (m_.size() != update.size()) m_ = Vector::Zero(update.size());
    m_ = beta_ * m_ + update;
    model += lr_ * m_;
  }

 private:
  float lr_, beta_;
  Vector m_;
};

// FedOpt (Reddi et al., card 9.4), without bias correction, as in the paper:
// m <- b1 m + (1 - b1) u; v per rule; model += lr m / (sqrt(v) + tau).
class FedOpt final : public ServerOptimizer {
 public:
  enum class Rule { kAdam, kYogi, kAdagrad };
  FedOpt(Rule rule, float lr, float beta1, float beta2, float tau)
      : rule_(rule), lr_(lr), beta1_(beta1), beta2_(beta2), tau_(tau) {}
  void apply(Vector& model, const Vector& update) override {
    if (m_.size() != update.size()) m_ = Vector::Zero(update.size()), v_ = Vector::Zero(update.size());
    m_ = beta1_ * m_ + (1.0f - beta1_) * update;
    const Vector sq = update.array().square().matrix();
    switch (rule_) {
      case Rule::kAdam: v_ = beta2_ * v_ + (1.0f - beta2_) * sq; break;
      case Rule::kYogi: v_ = (v_.array() - (1.0f - beta2_) * sq.array() * (v_ - sq).array().sign()).matrix(); break;
      case Rule::kAdagrad: v_ += sq; break;
    }
    model.array() += lr_ * m_.array() / (v_.array().sqrt() + tau_);
  }

 private:
  Rule rule_;
  float lr_, beta1_, beta2_, tau_;
  Vector m_, v_;
};

}  // namespace

ServerOptimizerRegistry& server_optimizer_registry() {
  static ServerOptimizerRegistry registry = [] {
    ServerOptimizerRegistry r("server optimizer");
    const Range lr_range = Range::above_until(0, 1e6);
    r.add(PluginSpec("sgd", "model += lr * mean update (lr 1.0 is plain FedAvg)").number("lr", 1.0, lr_range, "server step size"),
          [](Section& s) { return std::make_unique<ServerSgd>(static_cast<float>(s.number("lr"))); });
    r.add(PluginSpec("momentum", "FedAvgM: server momentum beta on the mean update")
              .number("lr", 1.0, lr_range, "server step size")
              .number("beta", 0.9, Range::between(0, 1), "momentum"),
          [](Section& s) {
            const auto lr = static_cast<float>(s.number("lr"));
            return std::make_unique<ServerMomentum>(lr, static_cast<float>(s.number("beta")));
          });
    const auto fedopt_spec = [lr_range](std::string name, std::string description) {
      return PluginSpec(std::move(name), std::move(description))
          .number("lr", 0.01, lr_range, "server step size")
          .number("beta1", 0.9, Range::between(0, 1), "first-moment decay")
          .number("beta2", 0.99, Range::between(0, 1), "second-moment decay")
          .number("tau", 1e-3, Range::above_until(0, 1e6), "adaptivity: added to the root of the second moment");
    };
    const auto fedopt = [](Section& s, FedOpt::Rule rule) {
      const auto lr = static_cast<float>(s.number("lr"));
      const auto beta1 = static_cast<float>(s.number("beta1"));
      const auto beta2 = static_cast<float>(s.number("beta2"));
      return std::make_unique<FedOpt>(rule, lr, beta1, beta2, static_cast<float>(s.number("tau")));
    };
    r.add(fedopt_spec("adam", "FedAdam"), [fedopt](Section& s) { return fedopt(s, FedOpt::Rule::kAdam); });
    r.add(fedopt_spec("yogi", "FedYogi"), [fedopt](Section& s) { return fedopt(s, FedOpt::Rule::kYogi); });
    r.add(fedopt_spec("adagrad", "FedAdagrad"), [fedopt](Section& s) { return fedopt(s, FedOpt::Rule::kAdagrad); });
    return r;
  }();
  return registry;
}

}  // namespace starling
