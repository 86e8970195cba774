#include "nodes/sampling.h"

#include <algorithm>
#include <cmath>

namespace starling {

namespace {
// `fraction` of the clients (at least one), uniformly without replacement.
class UniformSampler final : public ClientSampler {
 public:
  explicit UniformSampler(double fraction) : fraction_(fraction) {}
  std::vector<int> sample(int, int clients, Rng& rng) override {
    const int m = std::clamp(static_cast<int>(std::lround(fraction_ * clients)), 1, clients);
    auto chosen = rng.sample_without_replacement(clients, m);
    std::vector<int> out(chosen.begin(), chosen.end());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  double fraction_;
};
}  // namespace

SamplerRegistry& sampler_registry() {
  static SamplerRegistry registry = [] {
    SamplerRegistry r("sampler");
    r.add("uniform", "a fraction of the clients, uniformly without replacement", [](Section& s) {
      return std::make_unique<UniformSampler>(s.get_double("fraction", 0.1, 0.0, 1.0, true));
    });
    return r;
  }();
  return registry;
}

}  // namespace starling
