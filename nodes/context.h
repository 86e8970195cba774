// The only window a node has on the world. The simulator implements it on virtual time, the
// gRPC deployment on real time; a node cannot tell which one it runs in.
#pragma once
#include <functional>

#include "core/metric_sink.h"
#include "core/rng.h"
#include "nodes/message.h"

namespace starling {

class Context {
 public:
  virtual ~Context() = default;
  virtual NodeId self() const = 0;
  virtual SimTime now() const = 0;
  // Delivers `message` to message.receiver after the network's delay (sender is set to self()).
  virtual void send(Message message) = 0;
  // on_timer(tag) after `delay`.
  virtual void set_timer(SimTime delay, int tag) = 0;
  // Runs `work` as `samples` samples' worth of this node's compute, then on_compute_done(tag).
  // `work` must touch only what it captured and this node's own state: the runtime may run it
  // in parallel with other nodes' jobs, at any moment between now and its completion.
  virtual void compute(std::int64_t samples, std::function<void()> work, int tag) = 0;
  // This node's random stream for `purpose`.
  virtual Rng& rng(Purpose purpose) = 0;
  virtual MetricSink& metrics() = 0;
  // Every metric of `round` has been recorded: the runtime adds traffic, bytes_total and
  // wall_seconds, then commits the round.
  virtual void finish_round(int round) = 0;
  // The experiment is over.
  virtual void stop() = 0;
};

class Node {
 public:
  virtual ~Node() = default;
  virtual void on_start(Context&) {}
  virtual void on_message(Context& ctx, Message&& message) = 0;
  virtual void on_timer(Context&, int /*tag*/) {}
  virtual void on_compute_done(Context&, int /*tag*/) {}
};

}  // namespace starling
