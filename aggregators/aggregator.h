// Aggregators combine the contributions of several nodes into one vector.
#pragma once
#include <memory>
#include <span>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

struct Contribution {
  NodeId sender;
  double weight;         // e.g. the sender's sample count
  const Vector* vector;  // an update (server) or a model (gossip)
};

class Aggregator {
 public:
  virtual ~Aggregator() = default;
  // Contributions may arrive in any order; implementations order them by sender, so the result
  // is the same for any arrival order and thread count.
  virtual Vector combine(std::span<const Contribution> contributions) = 0;
  // True for the weighted mean: a server may then average linear encodings (sketches) before
  // decoding, which gives the same mean.
  virtual bool is_weighted_mean() const { return false; }
};

using AggregatorRegistry = Registry<Aggregator, Section&>;
AggregatorRegistry& aggregator_registry();

// Contributions sorted by sender id (ties keep their order).
std::vector<Contribution> sorted_by_sender(std::span<const Contribution> contributions);

}  // namespace starling
