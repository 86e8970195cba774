#include "nodes/message.h"

#include <string_view>

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

bool is_message_kind(unsigned value) {
  if (value < 1 || value > 255) return false;
  return std::string_view(to_string(static_cast<MessageKind>(value))) != "unknown";
}

}  // namespace starling
