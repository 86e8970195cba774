#include "topologies/topology.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

namespace starling {

std::int64_t Graph::num_edges() const {
  std::int64_t arcs = 0;
  for (const auto& n : neighbours) arcs += static_cast<std::int64_t>(n.size());
  return directed ? arcs : arcs / 2;
}

std::vector<std::vector<NodeId>> Graph::out_neighbours() const {
  if (!directed) return neighbours;
  std::vector<std::vector<NodeId>> out(neighbours.size());
  for (std::size_t i = 0; i < neighbours.size(); ++i)
    for (NodeId j : neighbours[i]) out[static_cast<std::size_t>(j)].push_back(static_cast<NodeId>(i));
  return out;
}

bool Graph::connected() const {
  if (neighbours.empty()) return true;
  const auto out = out_neighbours();
  std::vector<bool> seen(neighbours.size(), false);
  std::vector<NodeId> stack{0};
  seen[0] = true;
  std::size_t reached = 1;
  while (!stack.empty()) {
    const NodeId v = stack.back();
    stack.pop_back();
    for (const auto* list : {&neighbours[static_cast<std::size_t>(v)], &out[static_cast<std::size_t>(v)]})
      for (NodeId u : *list)
        if (!seen[static_cast<std::size_t>(u)]) seen[static_cast<std::size_t>(u)] = true, ++reached, stack.push_back(u);
  }
  return reached == neighbours.size();
}

void Graph::link(NodeId a, NodeId b) {
  if (a == b) return;
  neighbours[static_cast<std::size_t>(a)].push_back(b);
  neighbours[static_cast<std::size_t>(b)].push_back(a);
}

void Graph::sort() {
  for (auto& n : neighbours) {
    std::sort(n.begin(), n.end());
    n.erase(std::unique(n.begin(), n.end()), n.end());
  }
}

namespace {

Graph empty_graph(int n) { return Graph{std::vector<std::vector<NodeId>>(static_cast<std::size_t>(n)), false}; }

// ------------------------------------------------------------------ static generators

class Star final : public Topology {
 public:
  Graph at_round(int n, int, std::uint64_t) const override {
    Graph g = empty_graph(n);
    for (NodeId i = 1; i < n; ++i) g.link(0, i);
    g.sort();
    return g;
  }
};

class Complete final : public Topology {
 public:
  Graph at_round(int n, int, std::uint64_t) const override {
    Graph g = empty_graph(n);
    for (NodeId i = 0; i < n; ++i)
      for (NodeId j = i + 1; j < n; ++j) g.link(i, j);
    g.sort();
    return g;
  }
};

class Ring final : public Topology {
 public:
  Graph at_round(int n, int, std::uint64_t) const override {
    Graph g = empty_graph(n);
    for (NodeId i = 0; i < n && n > 1; ++i) g.link(i, (i + 1) % n);
    g.sort();
    return g;
  }
};

// A rows x (n / rows) grid with wrap-around in both directions.
class Torus final : public Topology {
 public:
  explicit Torus(int rows) : rows_(rows) {}
  Graph at_round(int n, int, std::uint64_t) const override {
    int rows = rows_;
    if (rows == 0) {  // the most square shape
      rows = static_cast<int>(std::sqrt(static_cast<double>(n)));
      while (rows > 1 && n % rows != 0) --rows;
    }
    if (rows < 1 || n % rows != 0)
      throw ConfigError("topology.rows", std::to_string(rows) + " rows do not divide " + std::to_string(n) + " nodes");
    const int cols = n / rows;
    Graph g = empty_graph(n);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const NodeId v = r * cols + c;
        g.link(v, r * cols + (c + 1) % cols);
        g.link(v, ((r + 1) % rows) * cols + c);
      }
    g.sort();
    return g;
  }

 private:
  int rows_;
};

// Neighbours at distance 2^0, 2^1, ... in both directions around the ring.
class Exponential final : public Topology {
 public:
  Graph at_round(int n, int, std::uint64_t) const override {
    Graph g = empty_graph(n);
    for (NodeId i = 0; i < n; ++i)
      for (std::int64_t hop = 1; hop < n; hop *= 2) g.link(i, static_cast<NodeId>((i + hop) % n));
    g.sort();
    return g;
  }
};

// Time-varying and directed: in round t node i receives from i - 2^k (k = (t - 1) mod ceil(log2 n))
// and sends to i + 2^k; one peer per round, cycling through the exponential graph's hops.
class OnePeerExponential final : public Topology {
 public:
  Graph at_round(int n, int round, std::uint64_t) const override {
    Graph g = empty_graph(n);
    g.directed = true;
    if (n < 2) return g;
    int hops = 0;
    while ((std::int64_t{1} << hops) < n) ++hops;
    const std::int64_t hop = std::int64_t{1} << ((round - 1) % hops);
    for (NodeId i = 0; i < n; ++i) g.neighbours[static_cast<std::size_t>(i)] = {static_cast<NodeId>(((i - hop) % n + n) % n)};
    return g;
  }
  bool time_varying() const override { return true; }
};

// A user's edge list: one "a b" pair per line (0-based node ids), '#' starts a comment.
class EdgesFile final : public Topology {
 public:
  explicit EdgesFile(std::string path) : path_(std::move(path)) {}
  Graph at_round(int n, int, std::uint64_t) const override {
    std::ifstream in(path_);
    if (!in) throw ConfigError("topology.path", path_ + ": cannot open the edge list");
    Graph g = empty_graph(n);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      line = line.substr(0, line.find('#'));
      std::replace(line.begin(), line.end(), ',', ' ');
      std::istringstream fields(line);
      long long a, b;
      if (!(fields >> a)) continue;  // blank or comment
      std::string extra;
      if (!(fields >> b) || (fields >> extra))
        throw DataError(path_ + ":" + std::to_string(number) + ": expected two node ids \"a b\", got \"" + line + "\"");
      if (a < 0 || b < 0 || a >= n || b >= n)
        throw DataError(path_ + ":" + std::to_string(number) + ": node id out of range 0.." + std::to_string(n - 1) +
                        " (data.clients sets the number of nodes)");
      if (a == b) throw DataError(path_ + ":" + std::to_string(number) + ": self-loop " + std::to_string(a));
      g.link(static_cast<NodeId>(a), static_cast<NodeId>(b));
    }
    g.sort();
    return g;
  }

 private:
  std::string path_;
};

// ------------------------------------------------------------------ random generators

// Random graphs are drawn from the run's topology stream; with resample_every R a new graph is
// drawn every R rounds (substream (round - 1) / R), otherwise once.
class RandomTopology : public Topology {
 public:
  explicit RandomTopology(int resample_every) : resample_every_(resample_every) {}
  Graph at_round(int n, int round, std::uint64_t seed) const final {
    const int epoch = resample_every_ > 0 ? (round - 1) / resample_every_ : 0;
    Rng rng = Rng(seed, kNoNode, Purpose::kTopology).substream(static_cast<std::uint64_t>(epoch));
    constexpr int kTries = 200;
    for (int t = 0; t < kTries; ++t) {
      Graph g = draw(n, rng);
      if (g.size() > 0 && g.connected()) return g;
    }
    throw ConfigError(key_, "no connected graph in " + std::to_string(kTries) + " draws; " + hint(n));
  }
  bool time_varying() const final { return resample_every_ > 0; }

 protected:
  // One draw; may be disconnected (then it is redrawn) or empty (a failed construction).
  virtual Graph draw(int n, Rng& rng) const = 0;
  virtual std::string hint(int n) const = 0;
  std::string key_ = "topology.kind";

 private:
  int resample_every_;
};

class RandomRegular final : public RandomTopology {
 public:
  RandomRegular(int degree, int resample_every) : RandomTopology(resample_every), degree_(degree) { key_ = "topology.degree"; }

 protected:
  // Half-edge matching (Steger-Wormald): every node holds `degree` half-edges; random pairs of free ones
  // are joined unless they would make a self-loop or a double edge; a draw that gets stuck
  // restarts. Unlike plain rejection of whole pairings, this works for larger degrees.
  Graph draw(int n, Rng& rng) const override {
    if (degree_ >= n || (std::int64_t{n} * degree_) % 2 != 0)
      throw ConfigError("topology.degree", std::to_string(degree_) + " is impossible on " + std::to_string(n) +
                                               " nodes: need degree < nodes and nodes x degree even");
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::vector<NodeId> half_edges;
      for (NodeId i = 0; i < n; ++i) half_edges.insert(half_edges.end(), static_cast<std::size_t>(degree_), i);
      std::set<std::pair<NodeId, NodeId>> edges;
      const auto valid = [&](NodeId a, NodeId b) { return a != b && !edges.count({std::min(a, b), std::max(a, b)}); };
      bool stuck = false;
      while (!half_edges.empty() && !stuck) {
        bool joined = false;
        for (int t = 0; t < 100 && !joined; ++t) {
          auto i = static_cast<std::size_t>(rng.below(half_edges.size())), j = static_cast<std::size_t>(rng.below(half_edges.size()));
          if (i == j || !valid(half_edges[i], half_edges[j])) continue;
          edges.insert({std::min(half_edges[i], half_edges[j]), std::max(half_edges[i], half_edges[j])});
          if (i < j) std::swap(i, j);  // remove the later index first
          half_edges[i] = half_edges.back(), half_edges.pop_back();
          half_edges[j] = half_edges.back(), half_edges.pop_back();
          joined = true;
        }
        if (!joined) {  // random tries failed: is any valid pair left at all?
          stuck = true;
          for (std::size_t i = 0; i < half_edges.size() && stuck; ++i)
            for (std::size_t j = i + 1; j < half_edges.size() && stuck; ++j) stuck = !valid(half_edges[i], half_edges[j]);
        }
      }
      if (stuck) continue;
      Graph g = empty_graph(n);
      for (const auto& [a, b] : edges) g.link(a, b);
      g.sort();
      return g;
    }
    return Graph{};
  }
  std::string hint(int) const override { return "try another degree"; }

 private:
  int degree_;
};

class ErdosRenyi final : public RandomTopology {
 public:
  ErdosRenyi(double p, int resample_every) : RandomTopology(resample_every), p_(p) { key_ = "topology.p"; }

 protected:
  Graph draw(int n, Rng& rng) const override {
    Graph g = empty_graph(n);
    for (NodeId i = 0; i < n; ++i)
      for (NodeId j = i + 1; j < n; ++j)
        if (rng.uniform() < p_) g.link(i, j);
    g.sort();
    return g;
  }
  std::string hint(int n) const override {
    const double threshold = std::log(static_cast<double>(n)) / n;
    return "p = " + Section::shortest(p_) + " on " + std::to_string(n) +
           " nodes is almost never connected; use p well above ln(n)/n = " + Section::shortest(threshold);
  }

 private:
  double p_;
};

// Watts-Strogatz: a ring lattice with k/2 neighbours on each side, each edge rewired with
// probability beta to a uniformly random node (no self-loops, no double edges).
class SmallWorld final : public RandomTopology {
 public:
  SmallWorld(int k, double beta, int resample_every) : RandomTopology(resample_every), k_(k), beta_(beta) {}

 protected:
  Graph draw(int n, Rng& rng) const override {
    if (k_ >= n) throw ConfigError("topology.k", std::to_string(k_) + " neighbours need more than " + std::to_string(n) + " nodes");
    std::set<std::pair<NodeId, NodeId>> edges;
    const auto key = [](NodeId a, NodeId b) { return std::pair{std::min(a, b), std::max(a, b)}; };
    for (NodeId i = 0; i < n; ++i)
      for (int j = 1; j <= k_ / 2; ++j) edges.insert(key(i, static_cast<NodeId>((i + j) % n)));
    for (NodeId i = 0; i < n; ++i)
      for (int j = 1; j <= k_ / 2; ++j) {
        const auto old_edge = key(i, static_cast<NodeId>((i + j) % n));
        if (!edges.count(old_edge) || rng.uniform() >= beta_) continue;
        const auto target = static_cast<NodeId>(rng.below(static_cast<std::uint64_t>(n)));
        if (target == i || edges.count(key(i, target))) continue;  // keep the lattice edge
        edges.erase(old_edge);
        edges.insert(key(i, target));
      }
    Graph g = empty_graph(n);
    for (const auto& [a, b] : edges) g.link(a, b);
    g.sort();
    return g;
  }
  std::string hint(int) const override { return "raise topology.k or lower topology.beta"; }

 private:
  int k_;
  double beta_;
};

int read_resample(Section& s) { return s.integer<int>("resample_every"); }

// A random graph: redrawn every `resample_every` rounds when > 0.
PluginSpec random_graph(std::string name, std::string description) {
  return PluginSpec(std::move(name), std::move(description))
      .integer("resample_every", 0, Range::at_least(0), "redraw the graph every this many rounds; 0: never", "rounds");
}

}  // namespace

TopologyRegistry& topology_registry() {
  static TopologyRegistry registry = [] {
    TopologyRegistry r("topology");
    const TopologyTraits regular{.regular = true};
    r.add(PluginSpec("star", "node 0 (the server) linked to every other node").with_traits(TopologyTraits{}),
          [](Section&) { return std::make_unique<Star>(); });
    r.add(PluginSpec("complete", "every pair of nodes linked").with_traits(regular),
          [](Section&) { return std::make_unique<Complete>(); });
    r.add(PluginSpec("ring", "each node linked to the next and the previous").with_traits(regular),
          [](Section&) { return std::make_unique<Ring>(); });
    r.add(PluginSpec("torus", "2-D grid with wrap-around (rows x nodes/rows)")
              .integer("rows", 0, Range::at_least(0), "grid rows; 0: the divisor of n nearest its square root")
              .with_traits(TopologyTraits{}),
          [](Section& s) { return std::make_unique<Torus>(s.integer<int>("rows")); });
    r.add(PluginSpec("exponential", "neighbours at 2^i hops around the ring").with_traits(TopologyTraits{}),
          [](Section&) { return std::make_unique<Exponential>(); });
    r.add(PluginSpec("one_peer_exponential", "time-varying: one peer per round at 2^(t mod log2 n) hops")
              .with_traits(TopologyTraits{.time_varying = true}),
          [](Section&) { return std::make_unique<OnePeerExponential>(); });
    r.add(PluginSpec("edges_file", "a user's edge list (lines \"a b\")")
              .required_text("path", "the edge-list file: one \"a b\" pair of node ids per line")
              .with_traits(TopologyTraits{.from_file = true}),
          [](Section& s) { return std::make_unique<EdgesFile>(s.text("path")); });
    r.add(random_graph("random_regular", "uniformly random graph where every node has `degree` neighbours")
              .integer("degree", 4, Range::at_least(1), "neighbours of every node")
              .with_traits(regular),
          [](Section& s) {
            const int degree = s.integer<int>("degree");
            return std::make_unique<RandomRegular>(degree, read_resample(s));
          });
    r.add(random_graph("erdos_renyi", "each edge present with probability p, redrawn until connected")
              .number("p", 0.1, Range::above_until(0, 1), "edge probability")
              .with_traits(TopologyTraits{}),
          [](Section& s) {
            const double p = s.number("p");
            return std::make_unique<ErdosRenyi>(p, read_resample(s));
          });
    r.add(random_graph("small_world", "Watts-Strogatz: ring lattice of k neighbours, edges rewired with probability beta")
              .integer("k", 4, Range::at_least(2), "lattice neighbours (even: k/2 on each side)")
              .number("beta", 0.1, Range::between(0, 1), "rewiring probability")
              .with_traits(TopologyTraits{}),
          [](Section& s) {
            const int k = s.integer<int>("k");
            if (k % 2 != 0) s.fail("k", std::to_string(k) + " is odd; k must be even (k/2 neighbours on each side)");
            const double beta = s.number("beta");
            return std::make_unique<SmallWorld>(k, beta, read_resample(s));
          });
    return r;
  }();
  return registry;
}

// ------------------------------------------------------------------ mixing

Eigen::MatrixXd MixingMatrix::dense() const {
  Eigen::MatrixXd w = Eigen::MatrixXd::Zero(size(), size());
  for (int i = 0; i < size(); ++i)
    for (const auto& [j, v] : rows[static_cast<std::size_t>(i)]) w(i, j) = v;
  return w;
}

Eigen::VectorXd MixingMatrix::apply(const Eigen::VectorXd& x) const {
  Eigen::VectorXd y(size());
  for (int i = 0; i < size(); ++i) {
    double s = 0.0;
    for (const auto& [j, v] : rows[static_cast<std::size_t>(i)]) s += v * x[j];
    y[i] = s;
  }
  return y;
}

namespace {
template <typename EdgeWeight>
MixingMatrix build_mixing(const Graph& g, EdgeWeight weight) {
  MixingMatrix w;
  w.rows.resize(g.neighbours.size());
  for (std::size_t i = 0; i < g.neighbours.size(); ++i) {
    double off = 0.0;
    auto& row = w.rows[i];
    for (NodeId j : g.neighbours[i]) {
      const double v = weight(static_cast<NodeId>(i), j);
      row.emplace_back(j, v);
      off += v;
    }
    row.emplace_back(static_cast<NodeId>(i), 1.0 - off);
    std::sort(row.begin(), row.end());
  }
  return w;
}
}  // namespace

MixingMatrix metropolis_hastings(const Graph& g) {
  return build_mixing(g, [&](NodeId i, NodeId j) {
    const auto di = g.neighbours[static_cast<std::size_t>(i)].size(), dj = g.neighbours[static_cast<std::size_t>(j)].size();
    return 1.0 / (1.0 + static_cast<double>(std::max(di, dj)));
  });
}

MixingMatrix max_degree_weights(const Graph& g) {
  std::size_t max_degree = 0;
  for (const auto& n : g.neighbours) max_degree = std::max(max_degree, n.size());
  return build_mixing(g, [&](NodeId, NodeId) { return 1.0 / (1.0 + static_cast<double>(max_degree)); });
}

const PluginSpec& topology_common_spec() {
  static const PluginSpec spec =
      PluginSpec("topology", "keys of every topology section, whatever its kind")
          .choice("mixing", "metropolis_hastings", {"metropolis_hastings", "uniform"},
                  "mixing weights of the decentralized protocols: Metropolis-Hastings, or 1/(1 + max degree)");
  return spec;
}

MixingRule mixing_rule(Section& topology) {
  topology.bind(topology_common_spec());
  const auto name = topology.text("mixing");
  return name == "uniform" ? &max_degree_weights : &metropolis_hastings;
}

double spectral_gap(const MixingMatrix& w, int dense_limit) {
  const int n = w.size();
  if (n <= 1) return 1.0;
  if (n <= dense_limit) {
    const Eigen::MatrixXd m = w.dense();
    if (m.isApprox(m.transpose(), 1e-12)) {
      const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(m, Eigen::EigenvaluesOnly).eigenvalues();
      return 1.0 - std::max(std::abs(ev[n - 2]), std::abs(ev[0]));  // ascending; ev[n-1] = 1
    }
    Eigen::VectorXd moduli = Eigen::EigenSolver<Eigen::MatrixXd>(m, false).eigenvalues().cwiseAbs();
    std::sort(moduli.data(), moduli.data() + n, std::greater<>());
    return 1.0 - moduli[1];
  }
  // Power iteration on W^2 restricted to vectors of mean zero (W is doubly stochastic, so the
  // all-ones direction is the eigenvalue 1 we skip): its growth rate is lambda_2^2.
  Rng rng(0, kNoNode, Purpose::kTopology);
  Eigen::VectorXd v(n);
  for (int i = 0; i < n; ++i) v[i] = rng.normal();
  double lambda_sq = 0.0;
  for (int it = 0; it < 20000; ++it) {
    v.array() -= v.mean();
    v.normalize();
    Eigen::VectorXd next = w.apply(w.apply(v));
    next.array() -= next.mean();
    const double estimate = next.norm();
    const bool settled = std::abs(estimate - lambda_sq) < 1e-12;
    lambda_sq = estimate;
    v = next;
    if (settled) break;
  }
  return 1.0 - std::sqrt(lambda_sq);
}

}  // namespace starling
