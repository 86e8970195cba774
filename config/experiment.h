// From YAML to a runnable experiment: typed, validated, with every plugin built by name.
#pragma once
#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "learning/dataset.h"
#include "learning/model.h"
#include "nodes/protocol.h"
#include "sim/sim_runtime.h"

namespace starling {

// Reads a YAML file (a key twice in one mapping is an error), applies "key.path=value" overrides
// and then removes the `unsets` key paths (config/sections.h: apply_overrides, which drops the
// keys of a kind an override switches away from; `notes`, if given, gets a line per drop).
// Throws ConfigError naming the file or key.
YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides,
                       const std::vector<std::string>& unsets = {}, std::vector<std::string>* notes = nullptr);

// Removes the `sweep:` section from `document` and returns it (undefined if there is none).
YAML::Node take_sweep(YAML::Node& document);

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// One run of a sweep: the swept keys' values (YAML text), the repetition and its seed.
struct SweepRun {
  KeyValues params;
  int repeat = 0;
  std::uint64_t seed = 0;
};
struct SweepPlan {
  std::string name;
  std::vector<SweepRun> runs;  // grid points (first key outermost) x repeats
};
// Expands a `sweep:` section: {name, repeat: N, grid: {key.path: [values...]},
// cases: [{key.path: value, ...}, ...]}: every case times the grid's Cartesian product. Repeat r runs
// with seed base_seed + r. Throws ConfigError naming the sweep key at fault.
SweepPlan expand_sweep(const YAML::Node& sweep, const std::string& default_name, std::uint64_t base_seed);

// The `deploy:` section: how the gRPC deployment (deploy/) runs this config. The simulator
// ignores it.
struct DeployParams {
  double max_message_mb = 64.0;      // larger messages are refused (and gRPC's receive limit)
  int heartbeat_ms = 500;            // node processes send a heartbeat this often
  double heartbeat_timeout_s = 10.0; // a node process silent for this long is dropped
  double join_timeout_s = 120.0;     // the run fails unless every node is hosted by then
  std::string tls_cert, tls_key;     // PEM files: the coordinator serves TLS (both or neither)
};

// Everything a run needs. Owns the data and model that the nodes refer to.
struct RunPlan {
  std::string name;
  std::uint64_t seed = 0;
  int rounds = 0;
  std::string db_path;
  std::string resolved_config;  // YAML of every key used, defaults filled in
  KeyValues config_values;      // the same, flattened to key paths
  SimRuntime::Options sim;
  DeployParams deploy;
  std::vector<NodeId> server_nodes;  // the server role (node 0 of server-based protocols), else empty
  bool round_deadline = false;       // protocol.deadline > 0: rounds close without lost nodes
  std::string no_deploy;             // why the protocol runs in the simulator only (empty: deployable)
  std::unique_ptr<DataBundle> data;
  std::unique_ptr<Model> model;
  std::unique_ptr<LearningTask> task;
  NodeSet nodes;
};

// Builds the plan; throws ConfigError (bad key or value) or DataError (bad dataset files).
// `default_name` is used when the config has no `name`.
std::unique_ptr<RunPlan> build_run(const YAML::Node& document, const std::string& default_name = "run");

}  // namespace starling
