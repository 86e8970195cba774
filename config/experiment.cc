#include "config/experiment.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "learning/partition.h"
#include "sim/availability.h"

namespace starling {

YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (!std::filesystem::exists(path)) throw ConfigError("", path + ": no such config file");
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError("", path + ": not valid YAML: " + e.what());
  }
  if (doc && !doc.IsNull() && !doc.IsMap()) throw ConfigError("", path + ": the config must be a mapping of keys to values");
  for (const auto& o : overrides) Section::apply_override(doc, o);
  if (!doc || doc.IsNull()) doc = YAML::Node(YAML::NodeType::Map);
  return doc;
}

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

// Builds the plugin that `section.<key>` names from `registry`, passing the section for its
// parameters.
template <typename R, typename... Args>
auto make_named(const R& registry, Section& section, const std::string& key, const std::string& default_kind,
                Args&&... args) {
  const auto kind = section.get<std::string>(key, default_kind);
  return registry.create(kind, section.path(key), section, std::forward<Args>(args)...);
}
template <typename R, typename... Args>
auto make_plugin(const R& registry, Section& section, const std::string& default_kind, Args&&... args) {
  return make_named(registry, section, "kind", default_kind, std::forward<Args>(args)...);
}

NetworkParams read_network(Section s) {
  NetworkParams p;
  p.latency_s = s.get_double("latency_ms", 20.0, 0.0) / 1e3;
  const double both = s.get_double("bandwidth_mbps", 100.0, 0.0, 1e9, true);
  p.uplink_bps = s.get_double("uplink_mbps", both, 0.0, 1e9, true) * 1e6;
  p.downlink_bps = s.get_double("downlink_mbps", both, 0.0, 1e9, true) * 1e6;
  p.queueing = s.get<bool>("queueing", false);
  return p;
}

ComputeParams read_compute(Section s) {
  ComputeParams p;
  const auto kind = s.get_choice("kind", "fixed", {"fixed", "lognormal"});
  p.kind = kind == "fixed" ? ComputeParams::Kind::kFixed : ComputeParams::Kind::kLognormal;
  p.samples_per_sec = s.get_double("samples_per_sec", 1000.0, 0.0, 1e12, true);
  if (p.kind == ComputeParams::Kind::kLognormal) p.sigma = s.get_double("sigma", 0.5, 0.0, 10.0);
  return p;
}

// Per-node link rates drawn around the configured ones (network.bandwidth_sigma), then the
// per-node speeds and rates of a CSV profile. A server keeps the configured rates.
void read_profiles(Section& root, Section& network, RunPlan& plan, bool server_based) {
  const auto nodes = plan.nodes.nodes.size();
  auto& net = plan.sim.network;
  const double sigma = network.get_double("bandwidth_sigma", 0.0, 0.0, 10.0);
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
  const auto path = root.get<std::string>("profile", "");
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

std::unique_ptr<RunPlan> build_run(const YAML::Node& document, const std::string& default_name) {
  auto plan = std::make_unique<RunPlan>();
  Section root(document);
  plan->name = root.get<std::string>("name", default_name);
  plan->seed = static_cast<std::uint64_t>(root.get_int("seed", 0, 0));
  plan->rounds = static_cast<int>(root.get_int("rounds", 100, 1, 100'000'000));

  // Everything cheap first, so a typo is reported before the dataset is loaded.
  Section data = root.child("data");
  const auto dataset = data.get<std::string>("dataset", "fashion_mnist");
  const int clients = static_cast<int>(data.get_int("clients", 100, 1, 10'000'000));
  Section partition = data.child("partition");
  const auto partition_kind = partition.get<std::string>("kind", dataset == "synthetic" ? "natural" : "iid");
  dataset_registry().require(dataset, data.path("dataset"));
  const double local_test = data.get_double("local_test_fraction", 0.0, 0.0, 0.9);
  const int novel = static_cast<int>(data.get_int("novel_clients", 0, 0, clients - 1));
  if (novel > 0 && local_test == 0.0)
    data.fail("novel_clients", "novel clients are evaluated on their local test split: set data.local_test_fraction too");
  if (partition_kind != "natural") partitioner_registry().require(partition_kind, partition.path("kind"));

  auto task = std::make_unique<LearningTask>();
  Section train = root.child("train");
  task->optimizer = make_named(optimizer_registry(), train, "optimizer", "sgd");
  task->batch_size = static_cast<int>(train.get_int("batch_size", 32, 1, 1 << 20));
  task->local_epochs = static_cast<int>(train.get_int("local_epochs", 1, 1, 1 << 20));
  task->prox_mu = static_cast<float>(train.get_double("prox_mu", 0.0, 0.0));

  Section protocol = root.child("protocol");
  const auto protocol_kind = protocol.get<std::string>("kind", "fedavg");
  protocol_registry().require(protocol_kind, protocol.path("kind"));  // fail before loading data
  const bool server_based = protocol_kind == "fedavg" || protocol_kind == "pfedgate" || protocol_kind == "fedbuff" ||
                            protocol_kind == "fedasync" || protocol_kind == "fedfix" || protocol_kind == "afa" ||
                            protocol_kind == "scaffold" || protocol_kind == "scallion" || protocol_kind == "scafcom" ||
                            protocol_kind == "fedamd";
  // FedProx's anchor is the global model a client started from: only server-based clients have one.
  if (task->prox_mu != 0.0f && !server_based)
    train.fail("prox_mu", "the proximal term pulls towards the server's model; " + protocol_kind + " has none");
  if (task->prox_mu != 0.0f && protocol_kind == "fedamd")
    train.fail("prox_mu", "fedamd's miners step along the variance-reduced direction v; it has no proximal term");
  Section attack_section = root.child("attack");
  const AttackParams attack = read_attack(attack_section);
  if (attack.kind != AttackKind::kNone) {
    static const std::set<std::string> kAttackable = {"fedavg", "fedbuff", "fedasync", "fedfix", "afa",
                                                      "dpsgd",  "gossip",  "modest"};
    // scaffold's messages carry control variates no attack defines; zo_shared sends projected
    // scalars, not the models or updates the attacks describe.
    if (!kAttackable.count(protocol_kind))
      attack_section.fail("kind", "attacks are simulated for protocols fedavg, fedbuff, fedasync, fedfix, afa, dpsgd, "
                                  "gossip and modest, not " + protocol_kind);
  }

  ProtocolParts parts;
  parts.seed = plan->seed;
  parts.rounds = plan->rounds;
  Section eval = root.child("eval");
  parts.eval_every = static_cast<int>(eval.get_int("every", 1, 1));
  task->finetune_steps = static_cast<int>(eval.get_int("finetune_steps", 0, 0, 1 << 20));
  const bool personal_protocol = protocol_kind == "fedavg" || protocol_kind == "scaffold" || protocol_kind == "pfedgate";
  if (local_test > 0 && !personal_protocol)
    data.fail("local_test_fraction", "personalized evaluation is implemented for fedavg, scaffold and pfedgate, not " +
                                         protocol_kind);
  if (task->finetune_steps > 0 && local_test == 0.0)
    eval.fail("finetune_steps", "fine-tuning is part of personalized evaluation: set data.local_test_fraction too");
  if (!server_based) parts.eval_nodes = static_cast<int>(eval.get_int("nodes", 10, 0));
  Section topology = root.child("topology");
  parts.topology = make_plugin(topology_registry(), topology,
                                server_based ? "star" : protocol_kind == "zo_shared" ? "complete" : "ring");
  parts.topology_section = &topology;
  Section sampling = root.child("sampling");
  parts.sampler = make_plugin(sampler_registry(), sampling, "uniform");
  Section aggregator = root.child("aggregator");
  parts.aggregator = make_plugin(aggregator_registry(), aggregator, "mean");
  parts.aggregator_section = &aggregator;
  Section server_optimizer = root.child("server_optimizer");
  parts.server_optimizer = make_plugin(server_optimizer_registry(), server_optimizer, "sgd");
  // Compressors are built once the model's tensor shapes are known (powersgd needs them); their
  // names are checked now.
  Section uplink = root.child("compressor");
  Section downlink = root.child("downlink_compressor");
  for (Section* s : {&uplink, &downlink}) compressor_registry().require(s->get<std::string>("kind", "none"), s->path("kind"));
  // ef21/econtrol messages are increments of an estimate every receiver must track; a client
  // misses the broadcasts of the rounds it sits out, so its estimate would drift.
  if (const auto fb = downlink.get<std::string>("feedback", "none"); fb == "ef21" || fb == "econtrol")
    downlink.fail("feedback", "\"" + fb + "\" needs every receiver to get every message; downlink takes none or ef");
  parts.compressor_section = &uplink;
  // The control-variate protocols send [x; c] down as one 2d vector: only element-wise encodings
  // fit it. Up, scaffold compresses y - x and c_i+ - c_i with any codec (feedback on y - x only,
  // nodes/server_client.cc); scallion and scafcom send one vector whose control variate already does
  // error feedback's work, and check the codec's bias when they are built (nodes/fedavg.cc).
  if (protocol_kind == "scaffold" || protocol_kind == "scallion" || protocol_kind == "scafcom") {
    const auto kind = downlink.get<std::string>("kind", "none");
    if (kind != "none" && kind != "fp16" && kind != "bf16")
      downlink.fail("kind", protocol_kind + " sends [model; control] down in one payload and takes none, fp16 or bf16, not \"" +
                                kind + "\"");
    if (downlink.get<std::string>("feedback", "none") != "none")
      downlink.fail("feedback", protocol_kind + " takes no downlink feedback");
    if (protocol_kind != "scaffold" && uplink.get<std::string>("feedback", "none") != "none")
      uplink.fail("feedback", protocol_kind +
                                  "'s control variates already feed back what compression leaves out; set compressor.feedback: none");
  }
  // FedAMD sends [model; v_glob] to miners, and its clients send gradients or model updates
  // through the same codec: only element-wise encodings fit.
  if (protocol_kind == "fedamd")
    for (Section* s : {&uplink, &downlink}) {
      const auto kind = s->get<std::string>("kind", "none");
      const std::string what = "fedamd sends [model; v_glob] in one payload and gradients and updates alike";
      if (kind != "none" && kind != "fp16" && kind != "bf16")
        s->fail("kind", what + " and takes none, fp16 or bf16, not \"" + kind + "\"");
      if (s->get<std::string>("feedback", "none") != "none") s->fail("feedback", protocol_kind + " takes no feedback");
    }
  if (!server_based && protocol_kind != "dpsgd") {  // dpsgd compresses gossip the CHOCO way (nodes/dpsgd.cc)
    const auto kind = uplink.get<std::string>("kind", "none");
    if (protocol_kind == "zo_shared" && kind != "none")
      uplink.fail("kind", "zo_shared sends no models, only projected gradients: set protocol.quantize instead");
    if (kind != "none" && kind != "fp16" && kind != "bf16")
      uplink.fail("kind", "\"" + kind + "\" would compress whole models on gossip edges; " + protocol_kind +
                          " takes none, fp16 or bf16 (compressed gossip is supported for dpsgd)");
    if (uplink.get<std::string>("feedback", "none") != "none")
      uplink.fail("feedback", protocol_kind + " sends whole models; feedback applies to compressed updates (fedavg, dpsgd)");
  }
  Section network = root.child("network");
  plan->sim.network = read_network(network);
  // Participation: who is online when, who drops out, how noisy links are (sim/availability.h).
  parts.link_noise_std = network.get_double("noise_std", 0.0, 0.0);
  Section availability = root.child("availability");
  const auto availability_kind = availability.get_choice("kind", "always", {"always", "markov", "trace"});
  plan->sim.dropout = availability.get_double("dropout", 0.0, 0.0, 1.0);
  // FedAMD's rounds wait for every anchor and miner, and its anchors' gradients are not models.
  // pFedGate's clients train their private gates on every model they get: no straggler handling.
  const bool participation = server_based && protocol_kind != "fedamd" && protocol_kind != "pfedgate";
  if ((availability_kind != "always" || plan->sim.dropout > 0.0) && !participation)
    availability.fail(availability_kind != "always" ? "kind" : "dropout",
                      "availability and dropout are simulated for fedavg, scaffold, scallion, scafcom, "
                      "fedbuff, fedasync, fedfix and afa, not " + protocol_kind);
  if (parts.link_noise_std > 0.0 && !participation)
    network.fail("noise_std", "link noise is added to the models and updates of fedavg, scaffold and the asynchronous servers, not " +
                                    protocol_kind);
  if (availability_kind == "markov") {
    const double on = availability.get_double("mean_online_s", 600.0, 0.0, 1e12, true);
    const double off = availability.get_double("mean_offline_s", 600.0, 0.0, 1e12, true);
    plan->sim.availability = std::make_shared<MarkovAvailability>(plan->seed, clients + 1, 1, on, off);
  } else if (availability_kind == "trace") {
    const auto path = availability.require<std::string>("path");
    plan->sim.availability = std::make_shared<TraceAvailability>(path, clients + 1, 1, availability.path("path"));
  }
  parts.availability = plan->sim.availability;
  parts.lossy = plan->sim.availability != nullptr || plan->sim.dropout > 0.0;
  plan->sim.compute = read_compute(root.child("compute"));
  plan->sim.seed = plan->seed;
  plan->db_path = root.child("log").get<std::string>("db", "results/starling.db");
  Section deploy = root.child("deploy");
  plan->deploy.max_message_mb = deploy.get_double("max_message_mb", 64.0, 0.0, 2000.0, true);
  plan->deploy.heartbeat_ms = static_cast<int>(deploy.get_int("heartbeat_ms", 500, 10, 600'000));
  plan->deploy.heartbeat_timeout_s = deploy.get_double("heartbeat_timeout_s", 10.0, 0.0, 86400.0, true);
  plan->deploy.join_timeout_s = deploy.get_double("join_timeout_s", 120.0, 0.0, 86400.0, true);
  plan->deploy.tls_cert = deploy.get<std::string>("tls_cert", "");
  plan->deploy.tls_key = deploy.get<std::string>("tls_key", "");
  if (plan->deploy.tls_cert.empty() != plan->deploy.tls_key.empty())
    deploy.fail(plan->deploy.tls_cert.empty() ? "tls_cert" : "tls_key",
                "TLS needs both deploy.tls_cert and deploy.tls_key (PEM files), or neither");
  if (server_based) plan->server_nodes = {0};

  std::unique_ptr<Partitioner> partitioner;
  if (partition_kind != "natural") partitioner = partitioner_registry().create(partition_kind, partition.path("kind"), partition);
  plan->data = dataset_registry().create(dataset, data.path("dataset"), data, plan->seed, clients);
  Section model = root.child("model");
  plan->model = make_plugin(model_registry(), model, "logreg", static_cast<int>(plan->data->train.num_features()),
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
  parts.downlink = make_compressor(downlink, plan->model->tensors());
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
