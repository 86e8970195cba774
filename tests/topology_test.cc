// topologies/: generators' degree and connectivity, mixing matrices, spectral gap.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <fstream>
#include <numbers>

#include "test_util.h"
#include "topologies/topology.h"

namespace starling {
namespace {

std::unique_ptr<Topology> topology(const std::string& yaml) {
  return test::from_section(yaml, [](Section& s) {
    return topology_registry().create(s.get<std::string>("kind", "star"), s.path("kind"), s);
  });
}

std::vector<std::size_t> degrees(const Graph& g) {
  std::vector<std::size_t> d;
  for (const auto& n : g.neighbours) d.push_back(n.size());
  return d;
}

// Every undirected graph: sorted lists, no self-loops, each edge at both ends.
void expect_well_formed(const Graph& g) {
  for (int i = 0; i < g.size(); ++i) {
    const auto& n = g.neighbours[static_cast<std::size_t>(i)];
    EXPECT_TRUE(std::is_sorted(n.begin(), n.end()));
    EXPECT_EQ(std::adjacent_find(n.begin(), n.end()), n.end()) << "duplicate neighbour of " << i;
    for (NodeId j : n) {
      EXPECT_NE(j, i);
      if (!g.directed) {
        const auto& back = g.neighbours[static_cast<std::size_t>(j)];
        EXPECT_TRUE(std::binary_search(back.begin(), back.end(), i)) << i << "-" << j << " is one-sided";
      }
    }
  }
}

void expect_doubly_stochastic(const MixingMatrix& w, bool symmetric) {
  const Eigen::MatrixXd m = w.dense();
  for (int i = 0; i < m.rows(); ++i) {
    EXPECT_NEAR(m.row(i).sum(), 1.0, 1e-12);
    EXPECT_NEAR(m.col(i).sum(), 1.0, 1e-12);
  }
  EXPECT_GE(m.minCoeff(), 0.0);
  if (symmetric) {
    EXPECT_TRUE(m.isApprox(m.transpose(), 1e-14));
  }
}

TEST(Topology, RingTorusExponentialDegrees) {
  const Graph ring = topology("{kind: ring}")->build(10);
  expect_well_formed(ring);
  EXPECT_EQ(degrees(ring), std::vector<std::size_t>(10, 2));
  EXPECT_EQ(ring.num_edges(), 10);
  EXPECT_TRUE(ring.connected());

  const Graph torus = topology("{kind: torus, rows: 4}")->build(20);
  expect_well_formed(torus);
  EXPECT_EQ(degrees(torus), std::vector<std::size_t>(20, 4));
  EXPECT_EQ(torus.num_edges(), 40);
  EXPECT_TRUE(torus.connected());
  EXPECT_THROW(topology("{kind: torus, rows: 3}")->build(20), ConfigError);

  const Graph exp = topology("{kind: exponential}")->build(16);
  expect_well_formed(exp);
  EXPECT_EQ(degrees(exp), std::vector<std::size_t>(16, 7));  // +-1, +-2, +-4 and 8 (= -8)
  EXPECT_EQ(exp.neighbours[0], (std::vector<NodeId>{1, 2, 4, 8, 12, 14, 15}));
}

TEST(Topology, OnePeerExponentialCyclesThroughHops) {
  const auto t = topology("{kind: one_peer_exponential}");
  EXPECT_TRUE(t->time_varying());
  for (int round = 1; round <= 7; ++round) {
    const Graph g = t->at_round(8, round, 0);
    EXPECT_TRUE(g.directed);
    const NodeId hop = 1 << ((round - 1) % 3);
    for (NodeId i = 0; i < 8; ++i)
      EXPECT_EQ(g.neighbours[static_cast<std::size_t>(i)], std::vector<NodeId>{static_cast<NodeId>((i - hop + 8) % 8)});
    expect_doubly_stochastic(metropolis_hastings(g), false);  // (I + P) / 2
  }
}

TEST(Topology, RandomRegularIsRegularConnectedAndSeeded) {
  const auto t = topology("{kind: random_regular, degree: 4}");
  const Graph a = t->build(30, 1), b = t->build(30, 1), c = t->build(30, 2);
  expect_well_formed(a);
  EXPECT_EQ(degrees(a), std::vector<std::size_t>(30, 4));
  EXPECT_TRUE(a.connected());
  EXPECT_EQ(a.neighbours, b.neighbours);
  EXPECT_NE(a.neighbours, c.neighbours);
  EXPECT_FALSE(t->time_varying());
  EXPECT_EQ(t->at_round(30, 9, 1).neighbours, a.neighbours);  // drawn once
  EXPECT_THROW(topology("{kind: random_regular, degree: 3}")->build(15), ConfigError);  // 15 x 3 is odd
  // Larger degrees too (whole-pairing rejection would almost never succeed here).
  const Graph dense = topology("{kind: random_regular, degree: 8}")->build(50, 1);
  expect_well_formed(dense);
  EXPECT_EQ(degrees(dense), std::vector<std::size_t>(50, 8));
}

TEST(Topology, ResampleEveryRedrawsOnSchedule) {
  const auto t = topology("{kind: random_regular, degree: 3, resample_every: 2}");
  EXPECT_TRUE(t->time_varying());
  const Graph r1 = t->at_round(20, 1, 5), r2 = t->at_round(20, 2, 5), r3 = t->at_round(20, 3, 5);
  EXPECT_EQ(r1.neighbours, r2.neighbours);
  EXPECT_NE(r1.neighbours, r3.neighbours);
  EXPECT_EQ(degrees(r3), std::vector<std::size_t>(20, 3));
}

TEST(Topology, ErdosRenyiConnectedOrClearError) {
  const Graph g = topology("{kind: erdos_renyi, p: 0.3}")->build(40, 3);
  expect_well_formed(g);
  EXPECT_TRUE(g.connected());
  EXPECT_NEAR(static_cast<double>(g.num_edges()) / (40 * 39 / 2), 0.3, 0.08);
  try {
    topology("{kind: erdos_renyi, p: 0.001}")->build(100, 3);
    FAIL() << "a hopeless p must be an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("topology.p"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ln(n)/n"), std::string::npos) << e.what();
  }
}

TEST(Topology, SmallWorldKeepsEdgeCountAndRewires) {
  const Graph lattice = topology("{kind: small_world, k: 4, beta: 0}")->build(20, 1);
  EXPECT_EQ(degrees(lattice), std::vector<std::size_t>(20, 4));
  const Graph rewired = topology("{kind: small_world, k: 4, beta: 0.3}")->build(20, 1);
  expect_well_formed(rewired);
  EXPECT_TRUE(rewired.connected());
  EXPECT_EQ(rewired.num_edges(), 40);  // rewiring moves edges, never adds or drops them
  EXPECT_NE(rewired.neighbours, lattice.neighbours);
  EXPECT_THROW(topology("{kind: small_world, k: 3}"), ConfigError);
}

TEST(Topology, EdgesFile) {
  test::TempDir dir;
  const std::string path = dir.file("edges.txt");
  std::ofstream(path) << "# a triangle and a tail\n0 1\n1,2\n2 0  # closing\n\n2 3\n";
  const Graph g = topology("{kind: edges_file, path: " + path + "}")->build(4);
  expect_well_formed(g);
  EXPECT_EQ(g.num_edges(), 4);
  EXPECT_EQ(g.neighbours[2], (std::vector<NodeId>{0, 1, 3}));
  std::ofstream(path) << "0 1\n1 9\n";
  try {
    topology("{kind: edges_file, path: " + path + "}")->build(4);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "0 1 2\n";
  EXPECT_THROW(topology("{kind: edges_file, path: " + path + "}")->build(4), DataError);
  EXPECT_THROW(topology("{kind: edges_file}"), ConfigError);  // path is required
}

TEST(Mixing, SymmetricAndDoublyStochastic) {
  for (const std::string yaml : {"{kind: ring}", "{kind: star}", "{kind: small_world, beta: 0.5}",
                                 "{kind: erdos_renyi, p: 0.2}", "{kind: exponential}"}) {
    const Graph g = topology(yaml)->build(24, 7);
    SCOPED_TRACE(yaml);
    expect_doubly_stochastic(metropolis_hastings(g), true);
    expect_doubly_stochastic(max_degree_weights(g), true);
  }
  // Metropolis-Hastings on a star: edge weights 1 / (1 + n - 1).
  const MixingMatrix w = metropolis_hastings(topology("{kind: star}")->build(5));
  EXPECT_DOUBLE_EQ(w.dense()(0, 3), 0.2);
  EXPECT_DOUBLE_EQ(w.dense()(3, 3), 0.8);
}

TEST(Mixing, RuleFromConfig) {
  YAML::Node doc = YAML::Load("{topology: {mixing: uniform}}");
  Section root(doc);
  Section s = root.child("topology");
  EXPECT_EQ(mixing_rule(s), &max_degree_weights);
  YAML::Node bad = YAML::Load("{topology: {mixing: metro}}");
  Section root2(bad);
  Section s2 = root2.child("topology");
  EXPECT_THROW(mixing_rule(s2), ConfigError);
}

// Metropolis-Hastings on a ring: W = circulant(1/3, 1/3, 1/3), eigenvalues 1/3 + 2/3 cos(2 pi k / n).
double ring_gap(int n) { return 2.0 / 3.0 * (1.0 - std::cos(2.0 * std::numbers::pi / n)); }

TEST(SpectralGap, RingMatchesClosedFormDenseAndIterative) {
  const auto ring = topology("{kind: ring}");
  EXPECT_NEAR(spectral_gap(metropolis_hastings(ring->build(20))), ring_gap(20), 1e-12);
  EXPECT_NEAR(spectral_gap(metropolis_hastings(ring->build(9))), ring_gap(9), 1e-12);  // odd n
  // Beyond the dense limit: power iteration.
  EXPECT_NEAR(spectral_gap(metropolis_hastings(ring->build(60)), 10), ring_gap(60), 1e-6);
  EXPECT_NEAR(spectral_gap(metropolis_hastings(topology("{kind: complete}")->build(10))), 1.0, 1e-12);
}

TEST(SpectralGap, GossipStepsContractByLambdaToTheQ) {
  // On lambda_2's eigenvector, Q gossip steps shrink the distance to the mean by |lambda_2|^Q.
  const int n = 16;
  const MixingMatrix w = metropolis_hastings(topology("{kind: ring}")->build(n));
  const double lambda = 1.0 - spectral_gap(w);
  Eigen::VectorXd x(n);
  for (int i = 0; i < n; ++i) x[i] = 5.0 + std::cos(2.0 * std::numbers::pi * i / n);
  const double start = (x.array() - x.mean()).matrix().norm();
  Eigen::VectorXd y = x;
  for (int q = 1; q <= 4; ++q) {
    y = w.apply(y);
    EXPECT_NEAR(y.mean(), x.mean(), 1e-12);  // gossip preserves the average
    EXPECT_NEAR((y.array() - y.mean()).matrix().norm() / start, std::pow(lambda, q), 1e-12);
  }
}

}  // namespace
}  // namespace starling
