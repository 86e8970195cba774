// Asynchronous servers on simulated time: FedBuff (card 8.3), FedAsync (Xie et al. 2019),
// FedFix (card 8.4) and Anarchic FL (AFA-CD / AFA-CS, card 8.2). One model update = one round.
#pragma once
#include "nodes/protocol.h"

namespace starling {

// How much an update computed on a model `tau` versions old counts.
struct Staleness {
  enum class Kind { kNone, kSqrt, kPoly } kind = Kind::kSqrt;
  double exponent = 0.5;  // kPoly: (1 + tau)^-exponent
  double weight(int tau) const;
};

NodeSet make_fedbuff(Section& protocol, ProtocolParts& parts);
NodeSet make_fedasync(Section& protocol, ProtocolParts& parts);
NodeSet make_fedfix(Section& protocol, ProtocolParts& parts);
NodeSet make_afa(Section& protocol, ProtocolParts& parts);

}  // namespace starling
