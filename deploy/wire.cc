#include "deploy/wire.h"

namespace starling {

void to_proto(const Message& message, wire::NodeMessage& out) {
  out.set_kind(static_cast<std::uint32_t>(message.kind));
  out.set_round(message.round);
  out.set_step(message.step);
  out.set_sender(message.sender);
  out.set_receiver(message.receiver);
  out.set_num_samples(message.num_samples);
  out.set_loss(message.loss);
  const Payload& p = message.payload_bytes();
  out.set_payload(reinterpret_cast<const char*>(p.data()), p.size());
}

Message from_proto(wire::NodeMessage&& in) {
  Message m;
  m.kind = static_cast<MessageKind>(in.kind());
  m.round = in.round();
  m.step = static_cast<std::uint16_t>(in.step());
  m.sender = in.sender();
  m.receiver = in.receiver();
  m.num_samples = in.num_samples();
  m.loss = in.loss();
  const std::string& bytes = in.payload();
  if (!bytes.empty()) m.set_payload(Payload(bytes.begin(), bytes.end()));
  return m;
}

std::optional<std::string> check_message(const wire::NodeMessage& m, const MessageLimits& limits) {
  const auto node_range = [](NodeId a, NodeId b) { return std::to_string(a) + "-" + std::to_string(b); };
  if (m.sender() < limits.first || m.sender() > limits.last)
    return "unknown sender: node " + std::to_string(m.sender()) + " is not hosted by this process (nodes " +
           node_range(limits.first, limits.last) + ")";
  if (m.receiver() < 0 || m.receiver() >= limits.nodes)
    return "unknown receiver: node " + std::to_string(m.receiver()) + " is not in the run (nodes " +
           node_range(0, limits.nodes - 1) + ")";
  if (!is_message_kind(m.kind())) return "unknown message kind " + std::to_string(m.kind());
  if (m.round() < 0 || m.round() > limits.rounds)
    return "wrong round " + std::to_string(m.round()) + " (the run has rounds 0-" + std::to_string(limits.rounds) + ")";
  if (m.step() > 0xffff) return "gossip step " + std::to_string(m.step()) + " out of range";
  if (m.num_samples() < 0) return "negative num_samples " + std::to_string(m.num_samples());
  if (static_cast<std::int64_t>(m.payload().size()) > limits.max_payload_bytes)
    return "payload of " + std::to_string(m.payload().size()) + " bytes exceeds deploy.max_message_mb (" +
           std::to_string(limits.max_payload_bytes) + " bytes)";
  return std::nullopt;
}

std::optional<std::string> check_report(const wire::MetricsReport& r, const MessageLimits& limits) {
  for (const auto& m : r.metrics()) {
    if (m.node() != kNoNode && (m.node() < limits.first || m.node() > limits.last))
      return "a metric of node " + std::to_string(m.node()) + ", which this process does not host";
    if (m.round() < 0 || m.round() > limits.rounds) return "a metric of round " + std::to_string(m.round()) + ", not in the run";
    if (m.name().empty() || m.name().size() > 64) return "a metric name that is empty or over 64 characters";
  }
  if (r.finished_round() < 0 || r.finished_round() > limits.rounds)
    return "finished round " + std::to_string(r.finished_round()) + ", not in the run";
  return std::nullopt;
}

}  // namespace starling
