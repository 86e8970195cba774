// Protocols build the nodes of a run from the parts config/ assembled.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "aggregators/aggregator.h"
#include "aggregators/server_optimizer.h"
#include "compressors/compressor.h"
#include "core/registry.h"
#include "core/section.h"
#include "learning/dataset.h"
#include "learning/model.h"
#include "learning/optimizer.h"
#include "nodes/attack.h"
#include "nodes/availability.h"
#include "nodes/context.h"
#include "nodes/probe.h"
#include "nodes/sampling.h"
#include "topologies/topology.h"

namespace starling {

// What local training needs; shared read-only by every node of a run.
struct LearningTask {
  const Dataset* train = nullptr;
  const Dataset* test = nullptr;
  Partition partition;                   // client index -> training sample indices
  const Model* model = nullptr;
  std::unique_ptr<Optimizer> optimizer;  // prototype: each training session clones it
  int local_epochs = 1;
  int batch_size = 32;
  float prox_mu = 0.0f;  // FedProx: server-based clients add prox_mu * (w - w_global) to each gradient
  // Personalized evaluation (data.local_test_fraction > 0): each training client's own test
  // samples (held out of `partition`), and the novel clients' training and test samples (novel
  // client k has the node key partition.size() + 1 + k in random streams).
  Partition local_test;
  Partition novel_train, novel_test;
  int finetune_steps = 0;  // eval.finetune_steps
  bool personalized() const { return !local_test.empty(); }
};

// The plugins config/ built from their sections (each object is the protocol's to keep).
struct ProtocolParts {
  std::uint64_t seed = 0;
  int rounds = 1;
  int eval_every = 1;
  LearningTask* task = nullptr;
  Vector initial_model;
  std::shared_ptr<const Topology> topology;  // the graph each round
  Section* topology_section = nullptr;        // for protocols that read more of it (mixing)
  int eval_nodes = 10;                        // decentralized: nodes whose own model is evaluated
  std::unique_ptr<ClientSampler> sampler;
  std::unique_ptr<Aggregator> aggregator;
  // Another aggregator from the same section, for protocols that need one per node (dpsgd).
  std::function<std::unique_ptr<Aggregator>()> new_aggregator;
  std::unique_ptr<ServerOptimizer> server_optimizer;
  std::unique_ptr<Compressor> uplink;    // prototypes, cloned per node
  // The uplink operator without its feedback wrapper: scaffold's control stream, whose deltas are
  // taken against what the server already has and so carry their own error feedback.
  std::unique_ptr<Compressor> uplink_operator;
  Section* compressor_section = nullptr;  // uplink's section, for protocols that read more of it (dpsgd)
  std::unique_ptr<Compressor> downlink;
  std::shared_ptr<const Attack> attack;  // null: every client is honest
  // Null: every node is always online. Server-based protocols send no work to offline clients.
  std::shared_ptr<const Availability> availability;
  bool lossy = false;           // clients may never answer (availability or dropout): servers need a deadline
  double link_noise_std = 0.0;  // network.noise_std: N(0, std^2) added to every decoded model and update
  std::vector<double> compute_speeds;    // simulated samples/s by node id (star: clients + 1 + novel)
};

struct NodeSet {
  std::vector<std::unique_ptr<Node>> nodes;  // index = node id
  // The run's measurement probe, if its metrics come from many nodes at once (decentralized
  // protocols); null when nodes record their own. Deployed runtimes relay observations to it.
  std::shared_ptr<Probe> probe;
};

// What a compressor slot of a protocol accepts. `why` completes "<protocol> <why>" in the
// generated error messages.
struct CodecNeed {
  enum class Kind { kAny, kDense, kNone } kind = Kind::kAny;
  bool feedback = true;  // error feedback (compressor.feedback) allowed
  std::string why{};
};

// What a protocol declares of itself, in its PluginSpec. config/ checks every run against it and
// deploy/ hosts the server nodes from it: no other file keeps a list of protocol names.
struct ProtocolTraits {
  bool server_based = false;  // node 0 serves and node c + 1 is client c; else node c is peer c
  std::string default_topology = "ring";
  // The optional plugin sections it reads, of: sampling, aggregator, server_optimizer, topology,
  // compressor, downlink_compressor. Any other of them in a config is an error.
  std::vector<std::string> sections{};
  bool attacks = false;        // attack.kind other than none
  bool personalized = false;   // data.local_test_fraction (personalized evaluation)
  bool participation = false;  // availability, dropout and network.noise_std
  bool prox = false;           // train.prox_mu (the FedProx term)
  std::string no_deploy{};     // why it runs in the simulator only; empty: `starling launch` runs it
  CodecNeed uplink{}, downlink{};
};

// The plugin sections a protocol may read (ProtocolTraits::sections draws from these).
const std::vector<std::string>& protocol_plugin_sections();

// Protocols by name: factory(protocol section, parts). Every protocol file registers its own
// through one line in nodes/protocol.cc.
using ProtocolRegistry = Registry<NodeSet, Section&, ProtocolParts&>;
ProtocolRegistry& protocol_registry();
const ProtocolTraits& protocol_traits(const std::string& kind);

// The nodes of FedAvg: node 0 is the server, node c + 1 holds client c's partition.
NodeSet make_fedavg(Section& protocol, ProtocolParts& parts);
// SCAFFOLD: FedAvg's rounds with control variates (models and controls travel together).
NodeSet make_scaffold(Section& protocol, ProtocolParts& parts);
// SCALLION / SCAFCOM (card 7.8): SCAFFOLD whose clients send one vector, compressed without bias
// (scallion, protocol.alpha) or contractively with local momentum (scafcom, protocol.alpha, .beta).
NodeSet make_scallion(Section& protocol, ProtocolParts& parts);
NodeSet make_scafcom(Section& protocol, ProtocolParts& parts);
// FedAMD (card 8.1): sampled clients are anchors (large-batch gradient at x) or miners (SARAH steps).
NodeSet make_fedamd(Section& protocol, ProtocolParts& parts);
// D-PSGD: node c holds client c's partition; rounds of local training, then gossip with W.
NodeSet make_dpsgd(Section& protocol, ProtocolParts& parts);
// Asynchronous gossip learning: Poisson wake-ups, train, push to a random neighbour, merge.
NodeSet make_gossip(Section& protocol, ProtocolParts& parts);
// pFedGate: FedAvg's rounds over block-sparse personalized models (private gates per client).
NodeSet make_pfedgate(Section& protocol, ProtocolParts& parts);
// MoDeST: hash-ordered decentralized sampling of trainers and aggregators, with crashes.
NodeSet make_modest(Section& protocol, ProtocolParts& parts);

}  // namespace starling
