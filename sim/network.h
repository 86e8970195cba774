// Network and compute models of the simulator.
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/types.h"

namespace starling {

struct NetworkParams {
  double latency_s = 0.02;
  double uplink_bps = 100e6;    // bits per second a node can send
  double downlink_bps = 100e6;  // bits per second a node can receive
  bool queueing = false;        // serialise transfers on each node's links
  // Per-node rates (index = node id; empty: every node has uplink_bps / downlink_bps).
  std::vector<double> node_uplink_bps, node_downlink_bps;
  double uplink(NodeId node) const;
  double downlink(NodeId node) const;
};

// Delivery time of a message:
//   without queueing: t_send + latency + bits / min(uplink(src), downlink(dst))
// (uplink and downlink per node when NetworkParams has per-node rates).
//   with queueing:    the transfer starts when both the sender's uplink and the receiver's
//                     downlink are free, occupies both for bits / min(...), then takes latency.
class Network {
 public:
  Network(const NetworkParams& params, int nodes);
  SimTime delivery_time(SimTime send_time, NodeId src, NodeId dst, std::int64_t wire_bytes);
  SimTime transfer_time(std::int64_t wire_bytes) const;  // at the default rates
  SimTime transfer_time(std::int64_t wire_bytes, NodeId src, NodeId dst) const;

 private:
  NetworkParams params_;
  std::vector<SimTime> uplink_free_, downlink_free_;
};

struct ComputeParams {
  enum class Kind { kFixed, kLognormal } kind = Kind::kFixed;
  double samples_per_sec = 1000.0;  // fixed speed, or the median speed for lognormal
  double sigma = 0.5;               // lognormal spread (of log speed)
  std::vector<double> node_speeds;  // per node (index = node id): > 0 replaces the drawn speed
};

// Per-node speeds (samples per second), each drawn from the node's own stream (then replaced by
// params.node_speeds where that is set).
std::vector<double> draw_speeds(const ComputeParams& params, int nodes, std::uint64_t seed);

}  // namespace starling
