// zo_shared: decentralized zeroth-order training with shared randomness ("Just One Byte", card 5).
#pragma once
#include "nodes/protocol.h"

namespace starling {

// Every node holds a replica of the model. Each iteration it computes S projected gradients on
// minibatches of its own partition (learning/zeroth_order.h), broadcasts them (1 byte or 4 bytes
// each) to every other node, and once it has all nodes' values for the iteration applies them in
// canonical order: the replicas stay bit-identical and no model ever crosses the network.
NodeSet make_zo_shared(Section& protocol, ProtocolParts& parts);

// The model replica of a zo_shared node (tests compare it with a centralised loop).
const Vector& zo_shared_model(const Node& node);

}  // namespace starling
