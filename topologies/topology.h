// Communication graphs: generators (static, random, time-varying), mixing matrices and their
// spectral gap. Server protocols use `star` (node 0 is the server).
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

struct Graph {
  // neighbours[i]: the nodes whose messages node i receives and mixes; sorted, no self-loops.
  // Undirected graphs (the default) list every edge at both ends.
  std::vector<std::vector<NodeId>> neighbours;
  bool directed = false;

  int size() const { return static_cast<int>(neighbours.size()); }
  std::int64_t num_edges() const;  // undirected: edges; directed: arcs
  // The nodes each node sends to (equal to `neighbours` when undirected).
  std::vector<std::vector<NodeId>> out_neighbours() const;
  // Every node reaches every other, following edges in either direction.
  bool connected() const;
  // Adds the undirected edge {a, b} (no duplicates, no self-loops); call sort() after.
  void link(NodeId a, NodeId b);
  void sort();
};

class Topology {
 public:
  virtual ~Topology() = default;
  // The graph in force during `round` (1-based), drawn from the run seed where random.
  virtual Graph at_round(int nodes, int round, std::uint64_t seed) const = 0;
  // True when the graph changes between rounds (one-peer exponential, resample_every).
  virtual bool time_varying() const { return false; }
  Graph build(int nodes, std::uint64_t seed = 0) const { return at_round(nodes, 1, seed); }
};

// What a topology kind declares of itself; the registry's conformance suite checks it on every
// kind: connected, no self-loops, symmetric, and every node of the same degree when `regular`.
struct TopologyTraits {
  bool regular = false;       // every node has the same degree
  bool time_varying = false;  // a different graph every round, whatever its parameters
  bool from_file = false;     // needs a user's file (the conformance suite writes one)
};

using TopologyRegistry = Registry<Topology, Section&>;
TopologyRegistry& topology_registry();
// The keys of every topology section: mixing.
const PluginSpec& topology_common_spec();

// Mixing matrix W, sparse by rows: rows[i] = (j, W_ij) for j = i and i's neighbours, sorted by j.
// Row i holds the weights node i applies to what it receives.
struct MixingMatrix {
  std::vector<std::vector<std::pair<NodeId, double>>> rows;
  int size() const { return static_cast<int>(rows.size()); }
  Eigen::MatrixXd dense() const;
  Eigen::VectorXd apply(const Eigen::VectorXd& x) const;  // W x
};

// W_ij = 1 / (1 + max(deg_i, deg_j)) on edges, W_ii = 1 - sum of the row: symmetric and doubly
// stochastic on undirected graphs (card 9.5).
MixingMatrix metropolis_hastings(const Graph& g);
// W_ij = 1 / (1 + max degree) on edges ("uniform" weights), W_ii = the rest.
MixingMatrix max_degree_weights(const Graph& g);
// The rule a config names: topology.mixing = metropolis_hastings (default) | uniform.
using MixingRule = MixingMatrix (*)(const Graph&);
MixingRule mixing_rule(Section& topology);

// 1 - |lambda_2(W)|: dense eigen-solver up to `dense_limit` nodes, power iteration on W - 11^T/n
// (symmetric W) beyond.
double spectral_gap(const MixingMatrix& w, int dense_limit = 1500);

}  // namespace starling
