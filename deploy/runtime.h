// GrpcRuntime: the deployed implementation of nodes::Context, on real time.
//
// A process (the coordinator or a node process) hosts some nodes of a run. Their handlers run one
// at a time on one Boost.Asio io_context thread, as in the simulator; timers are steady_timers on
// that io_context; compute jobs run on a thread pool and report back on the io thread. Whatever a
// node sends, records or finishes goes to the process's RuntimeHost, which carries it over gRPC
// (node process) or routes and records it (coordinator). The nodes' random streams are the
// simulator's (core NodeStreams): same seed, same node, same numbers.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nodes/protocol.h"

namespace starling {

// The process around a GrpcRuntime. Every call comes on the io thread.
class RuntimeHost {
 public:
  virtual ~RuntimeHost() = default;
  virtual void route(Message message) = 0;  // a hosted node sent `message` (sender is set)
  virtual MetricSink& sink() = 0;
  virtual void finish_round(int round) = 0;
  virtual void stop() = 0;
  // A message that arrived from process `origin` made a hosted node throw: refuse it.
  virtual void reject(int origin, const std::string& reason) = 0;
  // A hosted node's handler or compute job threw on its own: the run cannot go on.
  virtual void fail(const std::string& error) = 0;
};

class GrpcRuntime {
 public:
  // Hosts nodes.nodes[i] for every i in `hosted` (the other entries are discarded).
  GrpcRuntime(boost::asio::io_context& io, NodeSet nodes, const std::vector<NodeId>& hosted, std::uint64_t seed,
              int threads, RuntimeHost& host);
  ~GrpcRuntime();

  bool hosts(NodeId id) const { return nodes_.count(id) > 0; }
  // on_start of every hosted node, in id order. On the io thread, like everything below.
  void start();
  // Hands `message` to its receiver (hosted here). origin: the process it came from, -1 if local.
  void deliver(Message message, int origin);
  // Hands the run's probe an observation relayed from process `origin` (a bad one is refused).
  void record(Observation observation, int origin);
  // Nanoseconds since start() (since construction before it).
  SimTime now() const;
  // No handler runs after this; waits for running compute jobs. Call once io_context stopped.
  void shutdown();

 private:
  class NodeContext;
  template <typename F>
  void guarded(int origin, F&& handler);

  boost::asio::io_context& io_;
  boost::asio::thread_pool pool_;
  RuntimeHost& host_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::map<NodeId, std::unique_ptr<NodeContext>> contexts_;
  std::shared_ptr<Probe> probe_;
  std::unique_ptr<NodeContext> monitor_;  // the probe's context: no node, the host's metrics
  std::set<std::shared_ptr<boost::asio::steady_timer>> timers_;
  std::chrono::steady_clock::time_point start_;
  bool stopped_ = false;
};

}  // namespace starling
