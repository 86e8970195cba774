// A node process of a deployed run: joins the coordinator, builds the run from the config it hands
// out, hosts its block of nodes in a GrpcRuntime and exchanges their messages over one stream.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "nodes/protocol.h"

namespace starling {

// What a node process builds from the resolved config (apps/ supplies it: config/ builds runs).
struct HostedRun {
  NodeSet nodes;
  std::uint64_t seed = 0;
  std::shared_ptr<void> keep_alive;  // owns the data, model and task the nodes refer to
};
using RunBuilder = std::function<HostedRun(const std::string& config_yaml)>;

struct NodeProcessOptions {
  std::string coordinator;      // host:port
  std::string token;
  std::string tls_ca_pem;       // non-empty: connect with TLS, trusting these root certificates
  NodeId first = -1, last = -1; // -1, -1: the coordinator picks the block
  int threads = 1;              // compute threads
  double connect_timeout_s = 60.0;
  int crash_at_round = 0;       // tests: die like kill -9 when a message of this round arrives (0: never)
};

// Runs until the coordinator ends the run (0), the run fails or this process is refused (1), a
// config error (2) or SIGINT/SIGTERM (130).
int run_node_process(const NodeProcessOptions& options, const RunBuilder& build);

}  // namespace starling
