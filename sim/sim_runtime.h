// SimRuntime: runs a protocol's nodes on virtual time.
//
// Handlers run one at a time in event order. Compute jobs are batched: when the earliest
// started job is due, every started, unfinished job runs in parallel on TBB (each touches only
// its own node's state), and completions are then delivered in event order. Metrics are
// therefore bit-identical for any thread count.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "nodes/availability.h"
#include "nodes/protocol.h"
#include "sim/event_queue.h"
#include "sim/network.h"

namespace starling {

class SimRuntime {
 public:
  struct Options {
    NetworkParams network;
    ComputeParams compute;
    std::uint64_t seed = 0;
    int threads = 1;
    const std::atomic<bool>* interrupt = nullptr;  // set by a signal handler: stop soon, cleanly
    // Null: every node is always online. Otherwise an offline node receives nothing (messages
    // arriving then are dropped), sends nothing, and a compute job that is not online from its
    // start to its completion is lost: its work does not run if it started offline, and what the
    // node sends from its completion handler is discarded (no bytes charged).
    std::shared_ptr<const Availability> availability;
    double dropout = 0.0;  // probability that a finished compute job is lost the same way
  };
  enum class Outcome { kFinished, kInterrupted, kIdle };

  SimRuntime(NodeSet nodes, const Options& options, MetricSink& sink);
  ~SimRuntime();

  // Runs until a node calls stop() (kFinished), the interrupt flag is set (kInterrupted) or no
  // event is left (kIdle: a protocol that waits forever). Errors in handlers or jobs propagate.
  Outcome run();

  SimTime now() const { return now_; }
  std::int64_t bytes_total() const { return bytes_total_; }
  std::uint64_t events_processed() const { return events_; }
  std::int64_t jobs_run() const { return jobs_run_; }
  std::int64_t jobs_lost() const { return jobs_lost_; }                  // offline or dropped out
  std::int64_t messages_undelivered() const { return undelivered_; }    // receiver offline on arrival

 private:
  class NodeContext;
  enum EventKind : std::uint32_t { kStart, kDeliver, kTimer, kComputeDone };
  struct Job {
    NodeId node = kNoNode;
    int tag = 0;
    std::function<void()> work;
    bool done = false;
    SimTime start = 0;
  };
  struct LinkTraffic {
    std::int64_t bytes = 0, messages = 0;
  };

  void send(NodeId src, Message message);
  void start_job(NodeId node, std::int64_t samples, std::function<void()> work, int tag);
  void run_pending_jobs();
  bool online(NodeId node, SimTime t) const;
  void finish_round(int round);
  template <typename T>
  static std::size_t take_slot(std::vector<T>& slab, std::vector<std::size_t>& free_list);

  NodeSet nodes_;
  std::vector<std::unique_ptr<NodeContext>> contexts_;
  Options options_;
  MetricSink& sink_;
  EventQueue queue_;
  Network network_;
  std::vector<double> speeds_;
  SimTime now_ = 0;
  bool stopped_ = false;
  std::uint64_t events_ = 0;
  std::int64_t jobs_run_ = 0;
  std::int64_t jobs_lost_ = 0, undelivered_ = 0;
  NodeId muted_ = kNoNode;  // a node whose sends are discarded (the handler of its lost job runs)
  std::int64_t bytes_total_ = 0;
  std::vector<Message> messages_;
  std::vector<std::size_t> free_messages_;
  std::vector<Job> jobs_;
  std::vector<std::size_t> free_jobs_, pending_jobs_;
  std::map<int, std::map<std::pair<NodeId, NodeId>, LinkTraffic>> traffic_;  // round -> link -> totals
  std::chrono::steady_clock::time_point wall_start_;
};

}  // namespace starling
