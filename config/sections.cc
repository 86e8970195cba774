#include "config/sections.h"

#include <algorithm>
#include <functional>
#include <map>
#include <sstream>

#include "aggregators/aggregator.h"
#include "aggregators/server_optimizer.h"
#include "compressors/compressor.h"
#include "core/error.h"
#include "core/section.h"
#include "learning/dataset.h"
#include "learning/model.h"
#include "learning/optimizer.h"
#include "learning/partition.h"
#include "nodes/attack.h"
#include "nodes/protocol.h"
#include "nodes/sampling.h"
#include "topologies/topology.h"

namespace starling {

namespace {

PluginSpec top_level_spec() {
  return PluginSpec("(top level)", "the run as a whole")
      .text("name", "", "the run's name in the results database (default: the config file's stem)")
      .integer("seed", 0, Range::at_least(0), "every random stream of the run derives from it")
      .integer("rounds", 100, Range::between(1, 100'000'000), "rounds (or, for gossip, measurement periods)")
      .text("profile", "", "CSV of per-node speed,uplink_bps,downlink_bps (columns node,speed,uplink_bps,downlink_bps)")
      .note("sweep: a sweep section (name, repeat, grid, cases) read by `starling sweep`");
}

PluginSpec data_spec() {
  return PluginSpec("data", "the dataset (data.dataset picks it; its keys sit in this section) and its clients")
      .text("dataset", "fashion_mnist", "the dataset kind (see `starling plugins dataset`)")
      .integer("clients", 100, Range::between(1, 10'000'000), "clients (server-based: nodes 1..clients; else nodes 0..clients-1)")
      .number("local_test_fraction", 0.0, Range::between(0, 0.9),
              "hold out this fraction of each client's samples for personalized evaluation")
      .integer("novel_clients", 0, Range::at_least(0), "of the clients, this many never train (evaluated after fine-tuning)")
      .note("partition: {kind: iid | dirichlet | shards | natural, its keys}; default natural for synthetic, else iid");
}

PluginSpec train_spec() {
  return PluginSpec("train", "local training (train.optimizer picks the optimizer; its keys sit in this section)")
      .text("optimizer", "sgd", "the local optimizer kind (see `starling plugins optimizer`)")
      .integer("batch_size", 32, Range::between(1, 1 << 20), "minibatch size")
      .integer("local_epochs", 1, Range::between(1, 1 << 20), "epochs per round when protocol.local_steps is 0")
      .number("prox_mu", 0.0, Range::at_least(0), "FedProx: add prox_mu (w - w_global) to each gradient");
}

PluginSpec eval_spec() {
  return PluginSpec("eval", "evaluation")
      .integer("every", 1, Range::at_least(1), "evaluate every this many rounds (and after the last)", "rounds")
      .integer("finetune_steps", 0, Range::between(0, 1 << 20), "personalized evaluation: local steps before testing")
      .integer("nodes", 10, Range::at_least(0), "decentralized: nodes whose own model is tested (node_accuracy_mean)");
}

PluginSpec network_spec() {
  return PluginSpec("network", "links between nodes")
      .number("latency_ms", 20.0, Range::at_least(0), "one-way latency", "ms")
      .number("bandwidth_mbps", 100.0, Range::above_until(0, 1e9), "link rate both ways", "Mbit/s")
      .number("uplink_mbps", 100.0, Range::above_until(0, 1e9), "a node's sending rate", "Mbit/s")
      .computed_default("= bandwidth_mbps")
      .number("downlink_mbps", 100.0, Range::above_until(0, 1e9), "a node's receiving rate", "Mbit/s")
      .computed_default("= bandwidth_mbps")
      .flag("queueing", false, "messages of one link wait for each other (false: each gets the full rate)")
      .number("bandwidth_sigma", 0.0, Range::between(0, 10), "per-node rates drawn lognormally around the configured ones")
      .number("noise_std", 0.0, Range::at_least(0), "N(0, std^2) added to every decoded model and update (participation protocols)");
}

PluginSpec availability_spec() {
  return PluginSpec("availability", "who is online when, and who drops out (participation protocols)")
      .choice("kind", "always", {"always", "markov", "trace"}, "always online; a two-state Markov chain; or a CSV trace")
      .number("dropout", 0.0, Range::between(0, 1), "probability that a client given work never answers")
      .number("mean_online_s", 600.0, Range::above_until(0, 1e12), "markov: mean online period", "s")
      .number("mean_offline_s", 600.0, Range::above_until(0, 1e12), "markov: mean offline period", "s")
      .text("path", "", "trace: CSV of node,online_from_s,online_to_s (required for kind trace)");
}

PluginSpec compute_spec() {
  return PluginSpec("compute", "how long local training takes in virtual time")
      .choice("kind", "fixed", {"fixed", "lognormal"}, "every node at samples_per_sec, or speeds drawn lognormally")
      .number("samples_per_sec", 1000.0, Range::above_until(0, 1e12), "training speed (mean speed for lognormal)", "samples/s")
      .number("sigma", 0.5, Range::between(0, 10), "lognormal: spread of the log-speeds");
}

PluginSpec log_spec() {
  return PluginSpec("log", "where results go").text("db", "results/starling.db", "the SQLite results database");
}

PluginSpec deploy_spec() {
  return PluginSpec("deploy", "the gRPC deployment (`starling launch` / `coordinator`); the simulator ignores it")
      .number("max_message_mb", 64.0, Range::above_until(0, 2000), "larger messages are refused", "MB")
      .integer("heartbeat_ms", 500, Range::between(10, 600'000), "node processes send a heartbeat this often", "ms")
      .number("heartbeat_timeout_s", 10.0, Range::above_until(0, 86400), "a node process silent this long is dropped", "s")
      .number("join_timeout_s", 120.0, Range::above_until(0, 86400), "the run fails unless every node is hosted by then", "s")
      .text("tls_cert", "", "PEM certificate: the coordinator serves TLS (with tls_key)")
      .text("tls_key", "", "PEM private key of tls_cert");
}

// The node at parts[i..] below `node` (sharing the document's data), undefined if absent.
// Recursive: assigning to a YAML::Node would overwrite the node it refers to.
YAML::Node descend(const YAML::Node& node, const std::vector<std::string>& parts, std::size_t i) {
  if (!node.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);  // an absent key's node is not valid
  if (i == parts.size()) return node;
  if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return descend(node[parts[i]], parts, i + 1);
}

// The mapping at `path` ("" is the document).
YAML::Node mapping_at(const YAML::Node& document, const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  return descend(document, parts, 0);
}

std::string scalar_at(const YAML::Node& document, const std::string& path, const std::string& key) {
  const YAML::Node section = mapping_at(document, path);
  if (!section.IsDefined() || !section.IsMap() || !section[key] || !section[key].IsScalar()) return "";
  return section[key].Scalar();
}

std::vector<std::string> split_path(const std::string& key_path, const std::string& flag) {
  std::vector<std::string> parts;
  std::stringstream ss(key_path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw ConfigError(key_path, "empty component in the " + flag + " key path");
    parts.push_back(part);
  }
  if (parts.empty()) throw ConfigError(flag, "needs a key path");
  return parts;
}

bool in(const std::vector<std::string>& list, const std::string& s) { return std::find(list.begin(), list.end(), s) != list.end(); }

// The keys `kind` of `slot` takes (none for a pseudo kind or an unknown name: the build reports those).
std::vector<std::string> keys_of(const KindSlot& slot, const std::string& kind) {
  std::vector<std::string> keys;
  if (!slot.catalog->contains(kind)) return keys;
  const PluginSpec& spec = slot.catalog->spec(kind);
  for (const auto& p : spec.params()) keys.push_back(p.name);
  for (const auto& s : spec.sections()) keys.push_back(s.name());
  return keys;
}

// Before `slot`'s kind changes from `from` to `to`: removes what only `from` takes.
void drop_old_kind(YAML::Node& document, const KindSlot& slot, const std::string& from, const std::string& to,
                   std::vector<std::string>& notes) {
  YAML::Node section = mapping_at(document, slot.section);
  std::vector<std::string> dropped;
  if (section.IsDefined() && section.IsMap()) {
    const auto keep = keys_of(slot, to);
    for (const auto& key : keys_of(slot, from)) {
      if (in(keep, key) || (slot.common && slot.common->find(key)) || !section[key]) continue;
      section.remove(key);
      dropped.push_back(slot.section.empty() ? key : slot.section + "." + key);
    }
  }
  if (slot.catalog == &protocol_registry() && protocol_registry().contains(from) && protocol_registry().contains(to)) {
    const auto& reads_now = protocol_traits(to).sections;
    for (const auto& s : protocol_traits(from).sections)
      if (!in(reads_now, s) && document.IsMap() && document[s]) {
        document.remove(s);
        dropped.push_back(s);
      }
  }
  if (!dropped.empty()) {
    std::string list;
    for (const auto& d : dropped) list += (list.empty() ? "" : ", ") + d;
    notes.push_back(slot.selector_path() + ": " + from + " -> " + to + " drops " + list + " (" + from + "'s only)");
  }
}

}  // namespace

const std::vector<FixedSection>& fixed_sections() {
  static const std::vector<PluginSpec> specs = {top_level_spec(), data_spec(),         train_spec(),   eval_spec(),
                                                network_spec(),   availability_spec(), compute_spec(), log_spec(),
                                                deploy_spec()};
  static const std::vector<FixedSection> sections = [] {
    const char* paths[] = {"", "data", "train", "eval", "network", "availability", "compute", "log", "deploy"};
    std::vector<FixedSection> out;
    for (std::size_t i = 0; i < specs.size(); ++i) out.push_back({paths[i], &specs[i]});
    return out;
  }();
  return sections;
}

const PluginSpec& fixed_spec(const std::string& path) {
  for (const auto& s : fixed_sections())
    if (s.path == path) return *s.spec;
  throw std::logic_error("no fixed config section '" + path + "'");
}

const std::vector<KindSlot>& kind_slots() {
  static const std::vector<KindSlot> slots = {
      {"protocol", "kind", &protocol_registry(), nullptr, {}},
      {"data", "dataset", &dataset_registry(), &fixed_spec("data"), {}},
      {"data.partition", "kind", &partitioner_registry(), nullptr, {"natural"}},
      {"model", "kind", &model_registry(), nullptr, {}},
      {"train", "optimizer", &optimizer_registry(), &fixed_spec("train"), {}},
      {"sampling", "kind", &sampler_registry(), nullptr, {}},
      {"aggregator", "kind", &aggregator_registry(), nullptr, {}},
      {"server_optimizer", "kind", &server_optimizer_registry(), nullptr, {}},
      {"topology", "kind", &topology_registry(), &topology_common_spec(), {}},
      {"compressor", "kind", &compressor_registry(), &compressor_common_spec(), {}},
      {"downlink_compressor", "kind", &compressor_registry(), &compressor_common_spec(), {}},
      {"attack", "kind", &attack_registry(), &attack_common_spec(), {}},
  };
  return slots;
}

std::string chosen_kind(const YAML::Node& document, const KindSlot& slot) {
  if (auto v = scalar_at(document, slot.section, slot.selector); !v.empty()) return v;
  const std::string path = slot.selector_path();
  if (path == "protocol.kind") return "fedavg";
  if (path == "data.dataset") return "fashion_mnist";
  if (path == "data.partition.kind") return scalar_at(document, "data", "dataset") == "synthetic" ? "natural" : "iid";
  if (path == "model.kind") return "logreg";
  if (path == "train.optimizer") return "sgd";
  if (path == "sampling.kind") return "uniform";
  if (path == "aggregator.kind") return "mean";
  if (path == "server_optimizer.kind") return "sgd";
  if (path == "topology.kind") {
    KindSlot protocol = kind_slots().front();
    const auto kind = chosen_kind(document, protocol);
    return protocol_registry().contains(kind) ? protocol_traits(kind).default_topology : "ring";
  }
  if (path == "attack.kind") return "none";
  return "none";  // the compressors
}

std::vector<std::string> apply_overrides(YAML::Node& document, const std::vector<std::string>& assignments,
                                         const std::vector<std::string>& unsets) {
  std::vector<std::string> notes;
  if (!document || document.IsNull()) document = YAML::Node(YAML::NodeType::Map);
  for (const auto& assignment : assignments) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError("--set", "\"" + assignment + "\" must look like key.path=value");
    const std::string key = assignment.substr(0, eq);
    for (const KindSlot& slot : kind_slots()) {
      if (slot.selector_path() != key) continue;
      YAML::Node value;
      try {
        value = YAML::Load(assignment.substr(eq + 1));
      } catch (const YAML::Exception&) {
        break;  // apply_override reports it
      }
      const std::string from = chosen_kind(document, slot);
      if (value.IsScalar() && value.Scalar() != from) drop_old_kind(document, slot, from, value.Scalar(), notes);
    }
    Section::apply_override(document, assignment);
  }
  for (const auto& key_path : unsets) {
    auto parts = split_path(key_path, "--unset");
    const std::string last = parts.back();
    parts.pop_back();
    YAML::Node node = descend(document, parts, 0);
    if (!node.IsDefined() || !node.IsMap() || !node[last])
      throw ConfigError(key_path, "--unset names a key the config does not have");
    node.remove(last);
  }
  return notes;
}

void reject_duplicate_keys(const YAML::Node& document, const std::string& file) {
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& node, const std::string& prefix) {
    if (node.IsSequence()) {
      for (std::size_t i = 0; i < node.size(); ++i) walk(node[i], prefix + "[" + std::to_string(i) + "]");
      return;
    }
    if (!node.IsMap()) return;
    std::map<std::string, int> seen;  // key -> line
    for (const auto& kv : node) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      const std::string full = prefix.empty() ? key : prefix + "." + key;
      const int line = kv.first.Mark().line + 1;
      if (auto [it, fresh] = seen.emplace(key, line); !fresh)
        throw ConfigError(full, file + ":" + std::to_string(line) + ": the key appears twice in one mapping (first on line " +
                                    std::to_string(it->second) + "); keep one");
      walk(kv.second, full);
    }
  };
  walk(document, "");
}

}  // namespace starling
