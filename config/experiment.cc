#include "config/experiment.h"

#include <cmath>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>

#include "config/sections.h"
#include "learning/partition.h"
#include "sim/availability.h"

namespace starling {

YAML::Node take_sweep(YAML::Node& document) {
  if (!document || !document.IsMap() || !document["sweep"]) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node sweep = YAML::Clone(document["sweep"]);
  document.remove("sweep");
  return sweep;
}

namespace {

std::string flow_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << node;
  return e.c_str();
}

void flatten(const YAML::Node& node, const std::string& prefix, KeyValues& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else {
    out.emplace_back(prefix, flow_text(node));
  }
}

}  // namespace

SweepPlan expand_sweep(const YAML::Node& sweep, const std::string& default_name, std::uint64_t base_seed) {
  YAML::Node wrapper(YAML::NodeType::Map);
  wrapper["sweep"] = sweep;
  Section root(wrapper);
  Section s = root.child("sweep");
  SweepPlan plan;
  plan.name = s.get<std::string>("name", default_name);
  const int repeat = static_cast<int>(s.get_int("repeat", 1, 1, 10000));
  const YAML::Node grid = s.raw("grid");
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  if (grid.IsDefined() && !grid.IsNull()) {
    if (!grid.IsMap()) s.fail("grid", "must map key paths to lists of values, e.g. {train.lr: [0.05, 0.1]}");
    for (const auto& kv : grid) {
      const auto key = kv.first.as<std::string>();
      if (key == "seed") s.fail("grid", "sweep seeds with sweep.repeat, not the grid");
      if (!kv.second.IsSequence() || kv.second.size() == 0)
        throw ConfigError("sweep.grid." + key, "must be a non-empty list of values");
      std::vector<std::string> values;
      for (const auto& v : kv.second) values.push_back(flow_text(v));
      axes.emplace_back(key, std::move(values));
    }
  }
  // Cases: named variants that set several keys together (e.g. a compressor and its options).
  std::vector<KeyValues> cases;
  const YAML::Node case_list = s.raw("cases");
  if (case_list.IsDefined() && !case_list.IsNull()) {
    if (!case_list.IsSequence() || case_list.size() == 0)
      s.fail("cases", "must be a non-empty list of mappings, e.g. [{compressor.kind: none}, {compressor.kind: topk}]");
    for (std::size_t i = 0; i < case_list.size(); ++i) {
      const YAML::Node c = case_list[i];
      const std::string where = "sweep.cases[" + std::to_string(i) + "]";
      if (!c.IsMap() || c.size() == 0) throw ConfigError(where, "must be a mapping of key paths to values");
      KeyValues values;
      for (const auto& kv : c) {
        const auto key = kv.first.as<std::string>();
        if (key == "seed") throw ConfigError(where, "sweep seeds with sweep.repeat, not a case");
        for (const auto& axis : axes)
          if (axis.first == key) throw ConfigError(where, key + " is also a grid key; set it in one place");
        values.emplace_back(key, flow_text(kv.second));
      }
      cases.push_back(std::move(values));
    }
  }
  if (cases.empty()) cases.emplace_back();
  root.reject_unknown_keys();
  // Every case times the Cartesian product of the grid (first key outermost), each point repeated
  // with consecutive seeds.
  for (const KeyValues& c : cases) {
    std::vector<std::size_t> index(axes.size(), 0);
    while (true) {
      KeyValues params = c;
      for (std::size_t a = 0; a < axes.size(); ++a) params.emplace_back(axes[a].first, axes[a].second[index[a]]);
      for (int r = 0; r < repeat; ++r) plan.runs.push_back({params, r, base_seed + static_cast<std::uint64_t>(r)});
      std::size_t a = axes.size();
      while (a > 0 && ++index[a - 1] == axes[a - 1].second.size()) index[--a] = 0;
      if (a == 0) break;
    }
  }
  return plan;
}

namespace {

// The section at a dotted path below `parent` (recursive: assigning a Section would assign its
// YAML nodes, which overwrites the nodes they refer to).
Section descend(Section& parent, const std::string& path) {
  const auto dot = path.find('.');
  Section next = parent.child(path.substr(0, dot));
  return dot == std::string::npos ? next : descend(next, path.substr(dot + 1));
}

// The section at a dotted path ("data.partition"), bound to its fixed spec if it has one.
Section section_at(Section& root, const std::string& path) {
  Section s = descend(root, path);
  for (const auto& fixed : fixed_sections())
    if (fixed.path == path) s.bind(*fixed.spec);
  return s;
}

const KindSlot& slot_of(const std::string& selector_path) {
  for (const auto& slot : kind_slots())
    if (slot.selector_path() == selector_path) return slot;
  throw std::logic_error("no kind slot " + selector_path);
}

// Reads `section`'s selector for `slot_path` (default from chosen_kind) and records which kinds
// take which keys, so an unread key of another kind is told from a typo.
std::string read_kind(Section& section, const YAML::Node& document, const std::string& slot_path) {
  const KindSlot& slot = slot_of(slot_path);
  if (slot.common) section.bind(*slot.common);
  const auto kind = section.get<std::string>(slot.selector, chosen_kind(document, slot));
  if (std::find(slot.pseudo_kinds.begin(), slot.pseudo_kinds.end(), kind) == slot.pseudo_kinds.end())
    slot.catalog->spec(kind, section.path(slot.selector));  // an unknown name fails here, listing the known ones
  section.note_kinds(slot.selector, kind, slot.catalog->specs());
  return kind;
}

// Builds the plugin the slot's selector names, passing its section for its parameters.
template <typename R, typename... Args>
auto make_slot(const R& registry, Section& section, const YAML::Node& document, const std::string& slot_path, Args&&... args) {
  const auto kind = read_kind(section, document, slot_path);
  return registry.create(kind, section.path(slot_of(slot_path).selector), section, std::forward<Args>(args)...);
}

NetworkParams read_network(Section& s) {
  NetworkParams p;
  p.latency_s = s.number("latency_ms") / 1e3;
  const double both = s.number("bandwidth_mbps");
  p.uplink_bps = s.number("uplink_mbps", both) * 1e6;
  p.downlink_bps = s.number("downlink_mbps", both) * 1e6;
  p.queueing = s.flag("queueing");
  return p;
}

ComputeParams read_compute(Section s) {
  ComputeParams p;
  const auto kind = s.text("kind");
  p.kind = kind == "fixed" ? ComputeParams::Kind::kFixed : ComputeParams::Kind::kLognormal;
  p.samples_per_sec = s.number("samples_per_sec");
  if (p.kind == ComputeParams::Kind::kLognormal) p.sigma = s.number("sigma");
  return p;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The protocols whose traits satisfy `pred`, for messages that say what would work instead.
template <typename Pred>
std::string protocols_where(Pred pred) {
  std::vector<std::string> out;
  for (const auto& name : protocol_registry().names())
    if (pred(protocol_traits(name))) out.push_back(name);
  return joined(out);
}

// Checks a compressor section against what the protocol's slot needs (ProtocolTraits::uplink,
// ::downlink); the messages are generated from the traits of both kinds.
void check_codec(Section& section, const std::string& protocol, const CodecNeed& need, const char* direction) {
  const auto kind = section.get<std::string>("kind", "none");
  const auto feedback = section.get<std::string>("feedback", "none");
  if (need.kind == CodecNeed::Kind::kNone && kind != "none")
    section.fail("kind", protocol + " " + need.why + "; it takes compressor kind none, not \"" + kind + "\"");
  if (need.kind == CodecNeed::Kind::kDense && compressor_registry().contains(kind) &&
      !compressor_registry().spec(kind).traits<CompressorTraits>().dense)
    section.fail("kind", protocol + " " + need.why + " and takes a dense compressor (" +
                             compressor_kinds_where([](const CompressorTraits& t) { return t.dense; }) + "), not \"" + kind +
                             "\"");
  if (!need.feedback && feedback != "none")
    section.fail("feedback", protocol + (need.why.rfind("'s", 0) == 0 ? "" : " ") + need.why + ": it takes no " + direction +
                                 " feedback; set " + section.path("feedback") + ": none");
}

// Per-node link rates drawn around the configured ones (network.bandwidth_sigma), then the
// per-node speeds and rates of a CSV profile. A server keeps the configured rates.
void read_profiles(Section& root, Section& network, RunPlan& plan, bool server_based) {
  const auto nodes = plan.nodes.nodes.size();
  auto& net = plan.sim.network;
  const double sigma = network.number("bandwidth_sigma");
  const auto per_node = [&] {
    if (net.node_uplink_bps.empty()) {
      net.node_uplink_bps.assign(nodes, net.uplink_bps);
      net.node_downlink_bps.assign(nodes, net.downlink_bps);
    }
  };
  if (sigma > 0.0) {
    per_node();
    for (std::size_t i = server_based ? 1 : 0; i < nodes; ++i) {
      Rng rng(plan.seed, static_cast<NodeId>(i), Purpose::kClientProfile);
      net.node_uplink_bps[i] *= std::exp(sigma * rng.normal());
      net.node_downlink_bps[i] *= std::exp(sigma * rng.normal());
    }
  }
  const auto path = root.text("profile");
  if (path.empty()) return;
  per_node();
  plan.sim.compute.node_speeds.assign(nodes, 0.0);
  std::vector<bool> seen(nodes, false);
  for (const CsvRow& row : read_numeric_csv(path, {"node", "speed", "uplink_bps", "downlink_bps"}, "profile")) {
    const auto where = path + ":" + std::to_string(row.line) + ": ";
    const double node = row.values[0];
    if (node != std::floor(node) || node < 0 || node >= static_cast<double>(nodes))
      throw ConfigError("profile", where + "node must be a node id from 0 to " + std::to_string(nodes - 1) +
                                       " (as in the results database)");
    const auto i = static_cast<std::size_t>(node);
    if (seen[i]) throw ConfigError("profile", where + "node " + std::to_string(i) + " appears twice");
    seen[i] = true;
    for (std::size_t k = 1; k < 4; ++k)
      if (row.values[k] <= 0.0)
        throw ConfigError("profile", where + std::string(k == 1 ? "speed" : k == 2 ? "uplink_bps" : "downlink_bps") +
                                         " must be > 0");
    plan.sim.compute.node_speeds[i] = row.values[1];
    net.node_uplink_bps[i] = row.values[2];
    net.node_downlink_bps[i] = row.values[3];
  }
}

}  // namespace

YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides,
                       const std::vector<std::string>& unsets, std::vector<std::string>* notes) {
  if (!std::filesystem::exists(path)) throw ConfigError("", path + ": no such config file");
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError("", path + ": not valid YAML: " + e.what());
  }
  if (doc && !doc.IsNull() && !doc.IsMap()) throw ConfigError("", path + ": the config must be a mapping of keys to values");
  reject_duplicate_keys(doc, path);
  auto dropped = apply_overrides(doc, overrides, unsets);
  if (notes) notes->insert(notes->end(), dropped.begin(), dropped.end());
  if (!doc || doc.IsNull()) doc = YAML::Node(YAML::NodeType::Map);
  return doc;
}

std::unique_ptr<RunPlan> build_run(const YAML::Node& document, const std::string& default_name) {
  auto plan = std::make_unique<RunPlan>();
  Section root(document);
  root.bind(fixed_spec(""));
  plan->name = root.get<std::string>("name", default_name);
  plan->seed = root.integer<std::uint64_t>("seed");
  plan->rounds = root.integer<int>("rounds");

  // Everything cheap first, so a typo is reported before the dataset is loaded.
  Section data = section_at(root, "data");
  const auto dataset = read_kind(data, document, "data.dataset");
  const int clients = data.integer<int>("clients");
  Section partition = section_at(root, "data.partition");
  const auto partition_kind = read_kind(partition, document, "data.partition.kind");
  const double local_test = data.number("local_test_fraction");
  const int novel = data.integer<int>("novel_clients");
  if (novel >= clients) data.fail("novel_clients", std::to_string(novel) + " is out of range; must be <= " + std::to_string(clients - 1));
  if (novel > 0 && local_test == 0.0)
    data.fail("novel_clients", "novel clients are evaluated on their local test split: set data.local_test_fraction too");

  auto task = std::make_unique<LearningTask>();
  Section train = section_at(root, "train");
  task->optimizer = make_slot(optimizer_registry(), train, document, "train.optimizer");
  task->batch_size = train.integer<int>("batch_size");
  task->local_epochs = train.integer<int>("local_epochs");
  task->prox_mu = static_cast<float>(train.number("prox_mu"));

  Section protocol = section_at(root, "protocol");
  const auto protocol_kind = read_kind(protocol, document, "protocol.kind");  // fails before loading data
  const ProtocolTraits& traits = protocol_traits(protocol_kind);
  const bool server_based = traits.server_based;
  // A plugin section the protocol never reads would silently change nothing.
  for (const auto& s : protocol_plugin_sections()) {
    const auto& reads = traits.sections;
    if (root.has(s) && std::find(reads.begin(), reads.end(), s) == reads.end())
      throw ConfigError(s, "not read by protocol " + protocol_kind + "; remove it, or use one of: " +
                               protocols_where([&](const ProtocolTraits& t) {
                                 return std::find(t.sections.begin(), t.sections.end(), s) != t.sections.end();
                               }));
  }
  const auto reads = [&](const std::string& s) {
    return std::find(traits.sections.begin(), traits.sections.end(), s) != traits.sections.end();
  };
  // FedProx's anchor is the global model a client started from.
  if (task->prox_mu != 0.0f && !traits.prox)
    train.fail("prox_mu", "the proximal term pulls towards the server's model; " + protocol_kind +
                              " has none (FedProx works with " + protocols_where([](const ProtocolTraits& t) { return t.prox; }) + ")");
  Section attack_section = section_at(root, "attack");
  read_kind(attack_section, document, "attack.kind");
  const AttackParams attack = read_attack(attack_section);
  if (attack.kind != AttackKind::kNone && !traits.attacks)
    attack_section.fail("kind", "attacks are simulated for protocols " +
                                    protocols_where([](const ProtocolTraits& t) { return t.attacks; }) + ", not " + protocol_kind);

  ProtocolParts parts;
  parts.seed = plan->seed;
  parts.rounds = plan->rounds;
  Section eval = section_at(root, "eval");
  parts.eval_every = eval.integer<int>("every");
  task->finetune_steps = eval.integer<int>("finetune_steps");
  if (local_test > 0 && !traits.personalized)
    data.fail("local_test_fraction", "personalized evaluation is implemented for " +
                                         protocols_where([](const ProtocolTraits& t) { return t.personalized; }) + ", not " +
                                         protocol_kind);
  if (task->finetune_steps > 0 && local_test == 0.0)
    eval.fail("finetune_steps", "fine-tuning is part of personalized evaluation: set data.local_test_fraction too");
  if (!server_based) parts.eval_nodes = eval.integer<int>("nodes");
  // Only the sections the protocol reads are opened (an opened section is part of the resolved
  // config, which must build again as it is).
  std::optional<Section> topology, sampling, aggregator, server_optimizer, downlink;
  if (reads("topology")) {
    topology.emplace(section_at(root, "topology"));
    parts.topology = make_slot(topology_registry(), *topology, document, "topology.kind");
    parts.topology_section = &*topology;
  }
  if (reads("sampling")) {
    sampling.emplace(section_at(root, "sampling"));
    parts.sampler = make_slot(sampler_registry(), *sampling, document, "sampling.kind");
  }
  if (reads("aggregator")) {
    aggregator.emplace(section_at(root, "aggregator"));
    parts.aggregator = make_slot(aggregator_registry(), *aggregator, document, "aggregator.kind");
    const auto kind = aggregator->get<std::string>("kind", "mean");
    parts.new_aggregator = [kind, &aggregator] { return aggregator_registry().create(kind, aggregator->path("kind"), *aggregator); };
  }
  if (reads("server_optimizer")) {
    server_optimizer.emplace(section_at(root, "server_optimizer"));
    parts.server_optimizer = make_slot(server_optimizer_registry(), *server_optimizer, document, "server_optimizer.kind");
  }
  // Compressors are built once the model's tensor shapes are known (powersgd needs them); their
  // names and what the protocol needs of them are checked now.
  Section uplink = section_at(root, "compressor");
  read_kind(uplink, document, "compressor.kind");
  check_codec(uplink, protocol_kind, traits.uplink, "uplink");
  if (reads("downlink_compressor")) {
    downlink.emplace(section_at(root, "downlink_compressor"));
    read_kind(*downlink, document, "downlink_compressor.kind");
    // ef21/econtrol messages are increments of an estimate every receiver must track; a client
    // misses the broadcasts of the rounds it sits out, so its estimate would drift.
    if (const auto fb = downlink->get<std::string>("feedback", "none"); fb == "ef21" || fb == "econtrol")
      downlink->fail("feedback", "\"" + fb + "\" needs every receiver to get every message; downlink takes none or ef");
    check_codec(*downlink, protocol_kind, traits.downlink, "downlink");
  }
  parts.compressor_section = &uplink;
  Section network = section_at(root, "network");
  plan->sim.network = read_network(network);
  // Participation: who is online when, who drops out, how noisy links are (sim/availability.h).
  parts.link_noise_std = network.number("noise_std");
  Section availability = section_at(root, "availability");
  const auto availability_kind = availability.text("kind");
  plan->sim.dropout = availability.number("dropout");
  const auto participating = [] { return protocols_where([](const ProtocolTraits& t) { return t.participation; }); };
  if ((availability_kind != "always" || plan->sim.dropout > 0.0) && !traits.participation)
    availability.fail(availability_kind != "always" ? "kind" : "dropout",
                      "availability and dropout are simulated for " + participating() + ", not " + protocol_kind);
  if (parts.link_noise_std > 0.0 && !traits.participation)
    network.fail("noise_std", "link noise is added to the models and updates of " + participating() + ", not " + protocol_kind);
  if (availability_kind == "markov") {
    const double on = availability.number("mean_online_s");
    const double off = availability.number("mean_offline_s");
    plan->sim.availability = std::make_shared<MarkovAvailability>(plan->seed, clients + 1, 1, on, off);
  } else if (availability_kind == "trace") {
    if (!availability.has("path")) availability.fail("path", "is required with availability.kind trace");
    const auto path = availability.text("path");
    plan->sim.availability = std::make_shared<TraceAvailability>(path, clients + 1, 1, availability.path("path"));
  }
  parts.availability = plan->sim.availability;
  parts.lossy = plan->sim.availability != nullptr || plan->sim.dropout > 0.0;
  plan->sim.compute = read_compute(section_at(root, "compute"));
  plan->sim.seed = plan->seed;
  plan->db_path = section_at(root, "log").text("db");
  Section deploy = section_at(root, "deploy");
  plan->deploy.max_message_mb = deploy.number("max_message_mb");
  plan->deploy.heartbeat_ms = deploy.integer<int>("heartbeat_ms");
  plan->deploy.heartbeat_timeout_s = deploy.number("heartbeat_timeout_s");
  plan->deploy.join_timeout_s = deploy.number("join_timeout_s");
  plan->deploy.tls_cert = deploy.text("tls_cert");
  plan->deploy.tls_key = deploy.text("tls_key");
  if (plan->deploy.tls_cert.empty() != plan->deploy.tls_key.empty())
    deploy.fail(plan->deploy.tls_cert.empty() ? "tls_cert" : "tls_key",
                "TLS needs both deploy.tls_cert and deploy.tls_key (PEM files), or neither");
  if (server_based) plan->server_nodes = {0};
  plan->no_deploy = traits.no_deploy.empty() ? "" : protocol_kind + ": " + traits.no_deploy;

  std::unique_ptr<Partitioner> partitioner;
  if (partition_kind != "natural") partitioner = partitioner_registry().create(partition_kind, partition.path("kind"), partition);
  plan->data = dataset_registry().create(dataset, data.path("dataset"), data, plan->seed, clients);
  Section model = section_at(root, "model");
  plan->model = make_slot(model_registry(), model, document, "model.kind", static_cast<int>(plan->data->train.num_features()),
                          plan->data->train.num_classes);
  if (partitioner) {
    Rng rng(plan->seed, kNoNode, Purpose::kPartition);
    task->partition = partitioner->split(plan->data->train.y, plan->data->train.num_classes, clients, rng);
  } else if (plan->data->natural) {
    task->partition = *plan->data->natural;
  } else {
    partition.fail("kind", "\"natural\" needs a dataset that comes split by client (synthetic); use iid, dirichlet or shards");
  }
  task->partition = group_by_client(plan->data->train, task->partition);
  if (local_test > 0) {
    LocalSplit split = split_local(task->partition, local_test, novel, plan->seed);
    task->partition = std::move(split.train);
    task->local_test = std::move(split.test);
    task->novel_train = std::move(split.novel_train);
    task->novel_test = std::move(split.novel_test);
  }
  parts.compute_speeds = draw_speeds(plan->sim.compute, clients + 1, plan->seed);
  // Server-based: client c is node c + 1 (node 0 is the server); decentralized: node c.
  parts.attack = make_attack(attack, task->partition, plan->data->train, plan->seed, server_based ? 1 : 0);
  task->train = &plan->data->train;
  task->test = &plan->data->test;
  task->model = plan->model.get();
  parts.task = task.get();
  parts.uplink = make_compressor(uplink, plan->model->tensors());
  parts.uplink_operator =
      compressor_registry().create(uplink.get<std::string>("kind", "none"), uplink.path("kind"), uplink, plan->model->tensors());
  if (downlink) parts.downlink = make_compressor(*downlink, plan->model->tensors());
  Rng init_rng(plan->seed, kNoNode, Purpose::kModelInit);
  parts.initial_model = plan->model->init(init_rng);
  plan->nodes = std::move(*protocol_registry().create(protocol_kind, protocol.path("kind"), protocol, parts));
  plan->task = std::move(task);
  read_profiles(root, network, *plan, server_based);
  root.reject_unknown_keys();  // last: every plugin has read its keys by now

  YAML::Emitter out;
  out << root.resolved();
  plan->resolved_config = out.c_str();
  flatten(root.resolved(), "", plan->config_values);
  for (const auto& [key, value] : plan->config_values)  // read and checked by the protocol
    if (key == "protocol.deadline") plan->round_deadline = std::stod(value) > 0.0;
  return plan;
}

}  // namespace starling
