#include "deploy/wire.h"

#include <cstring>

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

void to_proto(const Observation& observation, wire::Observation& out) {
  out.set_round(observation.round);
  out.set_node(observation.node);
  out.set_model(reinterpret_cast<const char*>(observation.model.data()),
                static_cast<std::size_t>(observation.model.size()) * sizeof(float));
  for (double v : observation.values) out.add_values(v);
}

Observation from_proto(const wire::Observation& in) {
  Observation o;
  o.round = in.round();
  o.node = in.node();
  o.model.resize(static_cast<Eigen::Index>(in.model().size() / sizeof(float)));
  std::memcpy(o.model.data(), in.model().data(), static_cast<std::size_t>(o.model.size()) * sizeof(float));
  o.values.assign(in.values().begin(), in.values().end());
  return o;
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
  // Asynchronous nodes send into round rounds + 1 between the last round's end and their Stop.
  if (m.round() < 0 || m.round() > limits.rounds + 1)
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

std::optional<std::string> check_observation(const wire::Observation& o, const MessageLimits& limits) {
  if (o.node() < limits.first || o.node() > limits.last)
    return "an observation of node " + std::to_string(o.node()) + ", which this process does not host";
  if (o.round() < 0 || o.round() > limits.rounds) return "an observation of round " + std::to_string(o.round()) + ", not in the run";
  if (o.model().size() % sizeof(float) != 0)
    return "an observed model of " + std::to_string(o.model().size()) + " bytes, not a whole number of float32 values";
  if (static_cast<std::int64_t>(o.model().size()) > limits.max_payload_bytes)
    return "an observed model of " + std::to_string(o.model().size()) + " bytes exceeds deploy.max_message_mb";
  if (o.values_size() > 16) return "an observation with " + std::to_string(o.values_size()) + " values (at most 16)";
  return std::nullopt;
}

}  // namespace starling
