#include "nodes/protocol.h"

#include "nodes/zo_shared.h"

namespace starling {

ProtocolRegistry& protocol_registry() {
  static ProtocolRegistry registry = [] {
    ProtocolRegistry r("protocol");
    r.add("fedavg", "synchronous FedAvg: sample clients, train locally, aggregate, apply on the server",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedavg(s, parts)); });
    r.add("dpsgd", "decentralized SGD: local training, then Q gossip steps with the mixing matrix W",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_dpsgd(s, parts)); });
    r.add("gossip", "asynchronous gossip learning: Poisson wake-ups, train, push to a random neighbour, merge",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_gossip(s, parts)); });
    r.add("modest", "MoDeST: each round a hash-ordered sample of available nodes trains and aggregates",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_modest(s, parts)); });
    r.add("zo_shared", "Just One Byte: zeroth-order SPSA, nodes broadcast 1-byte projected gradients, shared seeds",
          [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_zo_shared(s, parts)); });
    return r;
  }();
  return registry;
}

}  // namespace starling
