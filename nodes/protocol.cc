#include "nodes/protocol.h"

#include "nodes/async_server.h"
#include "nodes/zo_shared.h"

namespace starling {

ProtocolRegistry& protocol_registry() {
  static ProtocolRegistry registry = [] {
    ProtocolRegistry r("protocol");
    r.add("fedavg", "synchronous FedAvg: sample clients, train locally, aggregate, apply on the server",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedavg(s, parts)); });
    r.add("scaffold", "SCAFFOLD: FedAvg rounds whose local steps are corrected by control variates (option II)",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scaffold(s, parts)); });
    r.add("scallion", "SCALLION: SCAFFOLD with one unbiasedly compressed uplink vector per client, c_i += alpha delta",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scallion(s, parts)); });
    r.add("scafcom", "SCAFCOM: SCAFFOLD with one contractively compressed uplink vector and local momentum beta",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scafcom(s, parts)); });
    r.add("fedamd", "FedAMD anchor sampling: anchors send large-batch gradients, miners take SARAH steps along their mean",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedamd(s, parts)); });
    r.add("dpsgd", "decentralized SGD: local training, then Q gossip steps with the mixing matrix W",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_dpsgd(s, parts)); });
    r.add("gossip", "asynchronous gossip learning: Poisson wake-ups, train, push to a random neighbour, merge",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_gossip(s, parts)); });
    r.add("modest", "MoDeST: each round a hash-ordered sample of available nodes trains and aggregates",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_modest(s, parts)); });
    r.add("zo_shared", "Just One Byte: zeroth-order SPSA, nodes broadcast 1-byte projected gradients, shared seeds",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_zo_shared(s, parts)); });
    r.add("fedbuff", "asynchronous FedBuff: C clients busy, apply the staleness-weighted buffer of every K updates",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedbuff(s, parts)); });
    r.add("fedasync", "asynchronous FedAsync: mix each arriving client model in at once, x <- (1-a)x + a x_i",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedasync(s, parts)); });
    r.add("fedfix", "asynchronous FedFix: every period_s, apply the updates finished since the last tick",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedfix(s, parts)); });
    r.add("pfedgate", "pFedGate: FedAvg rounds over block-sparse models picked per batch by private gates under budgets",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_pfedgate(s, parts)); });
    r.add("afa", "anarchic FL (AFA-CD/CS): clients pick their local steps, the server steps with mean gradients",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_afa(s, parts)); });
    return r;
  }();
  return registry;
}

}  // namespace starling
