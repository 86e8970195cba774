#include "nodes/protocol.h"

namespace starling {

// Every protocol family registers itself from its own file; this list is the one place that
// names them (a new protocol is its file plus one line here).
#define STARLING_PROTOCOL_FAMILIES(X) \
  X(fedavg_family)                    \
  X(fedamd)                           \
  X(pfedgate)                         \
  X(async_protocols)                  \
  X(dpsgd)                            \
  X(gossip)                           \
  X(modest)                           \
  X(zo_shared)

#define STARLING_DECLARE(family) void register_##family(ProtocolRegistry&);
STARLING_PROTOCOL_FAMILIES(STARLING_DECLARE)
#undef STARLING_DECLARE

const std::vector<std::string>& protocol_plugin_sections() {
  static const std::vector<std::string> sections = {"sampling",   "aggregator",          "server_optimizer", "topology",
                                                     "compressor", "downlink_compressor"};
  return sections;
}

ProtocolRegistry& protocol_registry() {
  static ProtocolRegistry registry = [] {
    ProtocolRegistry r("protocol");
#define STARLING_REGISTER(family) register_##family(r);
    STARLING_PROTOCOL_FAMILIES(STARLING_REGISTER)
#undef STARLING_REGISTER
    return r;
  }();
  return registry;
}

const ProtocolTraits& protocol_traits(const std::string& kind) {
  return protocol_registry().spec(kind, "protocol.kind").traits<ProtocolTraits>();
}

}  // namespace starling
