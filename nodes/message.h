// The message every protocol sends. The simulator charges wire_bytes(); the gRPC deployment
// sends the same header fields and payload bytes.
#pragma once
#include <cstdint>
#include <memory>

#include "compressors/compressor.h"
#include "core/types.h"

namespace starling {

enum class MessageKind : std::uint8_t {
  kModel = 1,   // server -> client: the global model
  kUpdate = 2,  // client -> server: the client's update
  kGossip = 3,      // peer -> peer: a model for one gossip step of a round
  kPing = 4,        // MoDeST availability walk (header only); round = walk id
  kPong = 5,        // answer to a ping
  kTrained = 6,     // MoDeST trainer -> aggregator: trained model + view
  kAggregated = 7,  // MoDeST aggregator -> sampled node: aggregated model + view
  kAck = 8,         // MoDeST aggregator -> trainer: contribution received
  kMembership = 9,  // MoDeST join or leave announcement: node id + view entry
  kProjected = 10,  // zo_shared: one iteration's projected gradients of the sender (S scalars)
  kAnchor = 11,     // FedAMD server -> anchor client: the model; the reply is a large-batch gradient
};

struct Message {
  MessageKind kind = MessageKind::kModel;
  std::int32_t round = 0;
  std::uint16_t step = 0;        // gossip step within the round (1-based), 0 when unused
  NodeId sender = kNoNode;
  NodeId receiver = kNoNode;
  std::int64_t num_samples = 0;  // the sender's training samples (aggregation weight)
  float loss = 0.0f;             // the sender's mean training loss
  // Compressor output, immutable once sent: one encoded model goes to many receivers without
  // a copy per receiver (what matters for large models and many clients).
  std::shared_ptr<const Payload> payload;

  void set_payload(Payload bytes) { payload = std::make_shared<const Payload>(std::move(bytes)); }
  const Payload& payload_bytes() const;
  std::int64_t payload_size() const { return payload ? static_cast<std::int64_t>(payload->size()) : 0; }

  // Fixed header on the wire: kind (1 byte), reserved (1), step (2), round (4), sender (4),
  // receiver (4), num_samples (8), loss (4), payload length (4) = 32 bytes.
  static constexpr std::int64_t kHeaderBytes = 32;
  std::int64_t wire_bytes() const { return kHeaderBytes + payload_size(); }
};

const char* to_string(MessageKind kind);
// The kind numbered `value`, if there is one (for messages that arrive from outside a process).
bool is_message_kind(unsigned value);

}  // namespace starling
