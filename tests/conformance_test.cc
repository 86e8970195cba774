// Conformance suites driven by the registries: a plugin is covered by being registered.
//  - every plugin of every kind builds from its declared defaults (no read of an undeclared key);
//  - every protocol gives bit-identical metrics with 1 and 2 threads, and its resolved config
//    builds the same run again (what a deployed node process does);
//  - every combination a protocol's traits refuse gives the generated error naming the key;
//  - every topology is connected, loop-free, symmetric, and regular when it says so;
//  - docs/config.md is what the specs render.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "config/docs.h"
#include "config/experiment.h"
#include "config/sections.h"
#include "learning/partition.h"
#include "run_util.h"
#include "test_util.h"
#include "topologies/topology.h"

#ifndef STARLING_SOURCE_DIR
#error "STARLING_SOURCE_DIR (the source tree, for docs/config.md) must be defined by the build"
#endif

namespace starling {
namespace {

// Small and fast: synthetic data needs no files; 12 clients suit every protocol's defaults.
const std::string kBase = R"yaml(
seed: 5
rounds: 3
data: { dataset: synthetic, clients: 12, max_samples: 60 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
)yaml";

// The overrides that make `protocol` run on kBase: its own kind, nothing else (defaults must do).
std::vector<std::string> protocol_run(const std::string& protocol) { return {"protocol.kind=" + protocol}; }

// Builds every plugin of `registry` from an empty section: no factory may read an undeclared key
// (a logic_error), and every key its spec declares is read and recorded with its default.
template <typename R, typename... Args>
void builds_from_declared_defaults(const R& registry, Args&&... args) {
  for (const auto& name : registry.names()) {
    const PluginSpec& spec = registry.spec(name);
    if (const auto* t = spec.template traits_if<TopologyTraits>(); t && t->from_file) continue;  // needs a file
    YAML::Node doc = YAML::Load("{}");
    Section root(doc);
    Section section = root.child("x");
    try {
      registry.create(name, "x.kind", section, args...);
    } catch (const std::logic_error& e) {
      ADD_FAILURE() << registry.kind() << " " << name << ": " << e.what();
    }
    for (const auto& p : spec.params())
      EXPECT_TRUE(root.resolved()["x"][p.name].IsDefined())
          << registry.kind() << " " << name << " never read its declared key " << p.name;
  }
}

TEST(Conformance, EveryPluginBuildsFromItsDeclaredDefaults) {
  builds_from_declared_defaults(aggregator_registry());
  builds_from_declared_defaults(server_optimizer_registry());
  builds_from_declared_defaults(sampler_registry());
  builds_from_declared_defaults(optimizer_registry());
  builds_from_declared_defaults(partitioner_registry());
  builds_from_declared_defaults(attack_registry());
  builds_from_declared_defaults(topology_registry());
  builds_from_declared_defaults(model_registry(), 8, 3);
  const std::vector<TensorShape> tensors = {{0, 12, 3, 4}};
  builds_from_declared_defaults(compressor_registry(), std::span<const TensorShape>(tensors));
}

TEST(Conformance, EveryProtocolGivesTheSameMetricsWithOneAndTwoThreads) {
  for (const auto& protocol : protocol_registry().names()) {
    const auto overrides = protocol_run(protocol);
    auto a = test::plan_from(kBase, overrides);
    auto b = test::plan_from(kBase, overrides);
    const auto one = test::run_plan(*a, 1), two = test::run_plan(*b, 2);
    EXPECT_FALSE(one.metrics.empty()) << protocol;
    test::expect_identical_runs(one, two, protocol);
  }
}

TEST(Conformance, EveryProtocolsResolvedConfigBuildsItself) {
  for (const auto& protocol : protocol_registry().names()) {
    const auto plan = test::plan_from(kBase, protocol_run(protocol));
    const auto again = build_run(YAML::Load(plan->resolved_config));
    EXPECT_EQ(again->resolved_config, plan->resolved_config) << protocol;
    EXPECT_EQ(again->server_nodes, plan->server_nodes) << protocol;
    EXPECT_EQ(plan->server_nodes.empty(), !protocol_traits(protocol).server_based) << protocol;
  }
}

// Building kBase with `overrides` on `protocol` throws a ConfigError naming `key`.
void expect_refused(const std::string& protocol, std::vector<std::string> overrides, const std::string& key,
                    const std::string& words = "") {
  overrides.insert(overrides.begin(), "protocol.kind=" + protocol);
  std::string label = protocol;
  for (const auto& o : overrides) label += " " + o;
  try {
    test::plan_from(kBase, overrides);
    ADD_FAILURE() << label << ": built, but its traits refuse it";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), key) << label << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << label << ": " << e.what();
  }
}

TEST(Conformance, EveryCombinationATraitRefusesGivesTheGeneratedError) {
  for (const auto& protocol : protocol_registry().names()) {
    const ProtocolTraits& t = protocol_traits(protocol);
    if (!t.attacks) expect_refused(protocol, {"attack.kind=sign_flip"}, "attack.kind", "not " + protocol);
    if (!t.personalized) expect_refused(protocol, {"data.local_test_fraction=0.2"}, "data.local_test_fraction", "not " + protocol);
    if (!t.participation) expect_refused(protocol, {"availability.dropout=0.1"}, "availability.dropout", "not " + protocol);
    if (!t.participation) expect_refused(protocol, {"network.noise_std=0.1"}, "network.noise_std", "not " + protocol);
    if (!t.prox) expect_refused(protocol, {"train.prox_mu=0.01"}, "train.prox_mu", protocol + " has none");
    if (t.uplink.kind == CodecNeed::Kind::kNone) expect_refused(protocol, {"compressor.kind=fp16"}, "compressor.kind", "kind none");
    if (t.uplink.kind == CodecNeed::Kind::kDense)
      expect_refused(protocol, {"compressor.kind=topk"}, "compressor.kind", "dense compressor (bf16, fp16, none)");
    if (!t.uplink.feedback && t.uplink.kind != CodecNeed::Kind::kNone)
      expect_refused(protocol, {"compressor.feedback=ef"}, "compressor.feedback", "takes no uplink feedback");
    if (t.server_based && t.downlink.kind == CodecNeed::Kind::kDense)
      expect_refused(protocol, {"downlink_compressor.kind=topk"}, "downlink_compressor.kind", "dense compressor");
    for (const auto& section : protocol_plugin_sections())
      if (std::find(t.sections.begin(), t.sections.end(), section) == t.sections.end())
        expect_refused(protocol, {section + ".kind=" + (section == "topology" ? "ring" : "x")}, section,
                       "not read by protocol " + protocol);
  }
}

TEST(Conformance, EveryTopologyIsConnectedLoopFreeSymmetricAndRegularWhenDeclared) {
  test::TempDir dir;
  std::string edges;
  for (int i = 0; i < 16; ++i) edges += std::to_string(i) + " " + std::to_string((i + 1) % 16) + "\n";
  const auto edges_file = dir.write("edges.txt", edges);
  for (const auto& name : topology_registry().names()) {
    const TopologyTraits& traits = topology_registry().spec(name).traits<TopologyTraits>();
    YAML::Node doc = YAML::Load(traits.from_file ? "{topology: {path: " + edges_file + "}}" : "{}");
    Section root(doc);
    Section section = root.child("topology");
    const auto topology = topology_registry().create(name, "topology.kind", section);
    EXPECT_EQ(topology->time_varying(), traits.time_varying) << name;
    for (int round = 1; round <= (traits.time_varying ? 4 : 1); ++round) {
      const Graph g = topology->at_round(16, round, 7);
      ASSERT_EQ(g.size(), 16) << name;
      EXPECT_TRUE(g.connected() || traits.time_varying) << name;
      std::set<std::size_t> degrees;
      for (int i = 0; i < g.size(); ++i) {
        const auto& in = g.neighbours[static_cast<std::size_t>(i)];
        degrees.insert(in.size());
        EXPECT_TRUE(std::is_sorted(in.begin(), in.end())) << name;
        EXPECT_EQ(std::count(in.begin(), in.end(), i), 0) << name << ": self-loop at " << i;
        if (!g.directed)
          for (NodeId j : in) {
            const auto& back = g.neighbours[static_cast<std::size_t>(j)];
            EXPECT_TRUE(std::binary_search(back.begin(), back.end(), i)) << name << ": " << i << "-" << j << " one way";
          }
      }
      if (traits.regular) {
        EXPECT_EQ(degrees.size(), 1u) << name << " declares every node of one degree";
      }
    }
  }
}

TEST(Conformance, DocsConfigMdIsWhatTheSpecsRender) {
  std::ifstream in(std::string(STARLING_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md is missing: cmake --build build/release --target config-docs";
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_TRUE(committed.str() == config_reference_markdown())
      << "docs/config.md is stale: run `cmake --build build/release --target config-docs` and commit it";
}

}  // namespace
}  // namespace starling
