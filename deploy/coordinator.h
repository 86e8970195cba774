// The coordinator of a deployed run: a gRPC server that hands out blocks of nodes and the resolved
// config to node processes, hosts the server role itself (a GrpcRuntime), relays every message
// between nodes (so it counts the run's traffic), and records the metrics through a MetricSink.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/metric_sink.h"
#include "nodes/protocol.h"

namespace starling {

struct CoordinatorOptions {
  std::string listen = "0.0.0.0:50051";  // host:port; port 0 picks a free one
  std::string token;                     // node processes must present it
  int procs = 1;                         // node processes expected: the client nodes split into this many blocks
  std::string port_file;                 // if set, the bound port is written there once listening
  int threads = 1;                       // compute threads of the coordinator's own nodes
  // The config's deploy section.
  std::string tls_cert_pem, tls_key_pem;  // non-empty: serve TLS with this certificate chain and key
  double max_message_mb = 64.0;
  int heartbeat_ms = 500;
  double heartbeat_timeout_s = 10.0;
  double join_timeout_s = 120.0;
  bool round_deadline = false;  // the protocol closes rounds without lost nodes (protocol.deadline)
};

// The run the coordinator hosts (built from the config by apps/).
struct DeployedRun {
  NodeSet nodes;                    // every node of the run; the coordinator keeps the server nodes
  std::vector<NodeId> server_nodes; // hosted by the coordinator
  std::uint64_t seed = 0;
  int rounds = 0;
  std::string config_yaml;          // the resolved config, handed to node processes
};

struct CoordinatorResult {
  enum class Status { kFinished, kFailed, kInterrupted } status = Status::kFailed;
  std::string error;
  std::int64_t bytes_total = 0;       // message header + payload bytes, as the simulator counts them
  std::int64_t grpc_bytes_total = 0;  // gRPC frames that carried them, every hop
};

// Runs the coordinator until the run ends (finished, failed, or SIGINT/SIGTERM: interrupted).
// Throws Error if it cannot listen.
CoordinatorResult run_coordinator(DeployedRun run, const CoordinatorOptions& options, MetricSink& sink);

}  // namespace starling
