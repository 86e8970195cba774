// Client sampling for partial participation.
#pragma once
#include <memory>
#include <vector>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"

namespace starling {

class ClientSampler {
 public:
  virtual ~ClientSampler() = default;
  // The clients (0-based client indices, ascending) taking part in `round`.
  virtual std::vector<int> sample(int round, int clients, Rng& rng) = 0;
};

using SamplerRegistry = Registry<ClientSampler, Section&>;
SamplerRegistry& sampler_registry();

}  // namespace starling
