// Communication graphs. Server protocols use `star` (node 0 is the server); decentralized
// protocols will add more generators to the same registry.
#pragma once
#include <memory>
#include <vector>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

struct Graph {
  std::vector<std::vector<NodeId>> neighbours;  // sorted, no self-loops, symmetric
  int size() const { return static_cast<int>(neighbours.size()); }
  std::int64_t num_edges() const;
};

class Topology {
 public:
  virtual ~Topology() = default;
  virtual Graph build(int nodes) const = 0;
};

using TopologyRegistry = Registry<Topology, Section&>;
TopologyRegistry& topology_registry();

}  // namespace starling
