#include "nodes/message.h"

namespace starling {

const Payload& Message::payload_bytes() const {
  static const Payload empty;
  return payload ? *payload : empty;
}

const char* to_string(MessageKind kind) {
  switch (kind) {
    case MessageKind::kModel: return "model";
    case MessageKind::kUpdate: return "update";
    case MessageKind::kGossip: return "gossip";
    case MessageKind::kPing: return "ping";
    case MessageKind::kPong: return "pong";
    case MessageKind::kTrained: return "trained model";
    case MessageKind::kAggregated: return "aggregated model";
    case MessageKind::kAck: return "ack";
    case MessageKind::kMembership: return "membership";
    case MessageKind::kProjected: return "projected gradients";
    case MessageKind::kAnchor: return "anchor request";
  }
  return "unknown";
}

}  // namespace starling
