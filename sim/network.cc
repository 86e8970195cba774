#include "sim/network.h"

#include <algorithm>
#include <cmath>

namespace starling {

Network::Network(const NetworkParams& params, int nodes)
    : params_(params), uplink_free_(static_cast<std::size_t>(nodes), 0), downlink_free_(static_cast<std::size_t>(nodes), 0) {}

SimTime Network::transfer_time(std::int64_t wire_bytes) const {
  const double bps = std::min(params_.uplink_bps, params_.downlink_bps);
  return from_seconds(static_cast<double>(wire_bytes) * 8.0 / bps);
}

SimTime Network::transfer_time(std::int64_t wire_bytes, NodeId src, NodeId dst) const {
  const double bps = std::min(params_.uplink(src), params_.downlink(dst));
  return from_seconds(static_cast<double>(wire_bytes) * 8.0 / bps);
}

double NetworkParams::uplink(NodeId node) const {
  const auto i = static_cast<std::size_t>(node);
  return i < node_uplink_bps.size() ? node_uplink_bps[i] : uplink_bps;
}

double NetworkParams::downlink(NodeId node) const {
  const auto i = static_cast<std::size_t>(node);
  return i < node_downlink_bps.size() ? node_downlink_bps[i] : downlink_bps;
}

SimTime Network::delivery_time(SimTime send_time, NodeId src, NodeId dst, std::int64_t wire_bytes) {
  const SimTime latency = from_seconds(params_.latency_s), transfer = transfer_time(wire_bytes, src, dst);
  if (!params_.queueing) return send_time + latency + transfer;
  auto& up = uplink_free_[static_cast<std::size_t>(src)];
  auto& down = downlink_free_[static_cast<std::size_t>(dst)];
  const SimTime start = std::max({send_time, up, down});
  up = down = start + transfer;
  return start + transfer + latency;
}

std::vector<double> draw_speeds(const ComputeParams& params, int nodes, std::uint64_t seed) {
  std::vector<double> speeds(static_cast<std::size_t>(nodes), params.samples_per_sec);
  if (params.kind == ComputeParams::Kind::kLognormal)
    for (int i = 0; i < nodes; ++i) {
      Rng rng(seed, i, Purpose::kComputeSpeed);
      speeds[static_cast<std::size_t>(i)] = params.samples_per_sec * std::exp(params.sigma * rng.normal());
    }
  for (std::size_t i = 0; i < params.node_speeds.size() && i < speeds.size(); ++i)
    if (params.node_speeds[i] > 0.0) speeds[i] = params.node_speeds[i];
  return speeds;
}

}  // namespace starling
