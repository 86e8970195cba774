// Client sampling for partial participation.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"

namespace starling {

// What the server knows about its clients when it samples.
struct ClientPool {
  int round = 1;
  int clients = 0;
  const std::vector<std::int64_t>* sizes = nullptr;  // training samples per client
  // The mean training loss each client reported with its last update that reached the server;
  // NaN for a client never heard from.
  const std::vector<double>* losses = nullptr;
  std::function<bool(int)> online;  // client index -> reachable now; empty: everyone is
  bool reachable(int c) const { return !online || online(c); }
};

class ClientSampler {
 public:
  explicit ClientSampler(double fraction) : fraction_(fraction) {}
  virtual ~ClientSampler() = default;
  // Clients per round: max(1, round(fraction * clients)).
  int per_round(int clients) const;
  // `count` distinct clients (0-based indices, ascending) to take part in pool.round (fewer only
  // when the strategy has fewer to offer, e.g. `available` with few clients online).
  virtual std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) = 0;

 private:
  double fraction_;
};

using SamplerRegistry = Registry<ClientSampler, Section&>;
SamplerRegistry& sampler_registry();

// `count` distinct indices of `weights` (all > 0), drawn one after another with probability
// proportional to the weights of those not drawn yet (successive sampling), in the order drawn.
std::vector<int> weighted_without_replacement(const std::vector<double>& weights, int count, Rng& rng);

}  // namespace starling
