#include "topologies/topology.h"

namespace starling {

std::int64_t Graph::num_edges() const {
  std::int64_t twice = 0;
  for (const auto& n : neighbours) twice += static_cast<std::int64_t>(n.size());
  return twice / 2;
}

namespace {
class Star final : public Topology {
 public:
  Graph build(int nodes) const override {
    Graph g{std::vector<std::vector<NodeId>>(static_cast<std::size_t>(nodes))};
    for (NodeId i = 1; i < nodes; ++i) g.neighbours[0].push_back(i), g.neighbours[i].push_back(0);
    return g;
  }
};
class Complete final : public Topology {
 public:
  Graph build(int nodes) const override {
    Graph g{std::vector<std::vector<NodeId>>(static_cast<std::size_t>(nodes))};
    for (NodeId i = 0; i < nodes; ++i)
      for (NodeId j = 0; j < nodes; ++j)
        if (i != j) g.neighbours[i].push_back(j);
    return g;
  }
};
}  // namespace

TopologyRegistry& topology_registry() {
  static TopologyRegistry registry = [] {
    TopologyRegistry r("topology");
    r.add("star", "node 0 (the server) linked to every other node", [](Section&) { return std::make_unique<Star>(); });
    r.add("complete", "every pair of nodes linked", [](Section&) { return std::make_unique<Complete>(); });
    return r;
  }();
  return registry;
}

}  // namespace starling
