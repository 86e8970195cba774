#include "sim/sim_runtime.h"

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <cmath>

namespace starling {

class SimRuntime::NodeContext final : public Context {
 public:
  NodeContext(SimRuntime& rt, NodeId id) : rt_(rt), id_(id), rngs_(rt.options_.seed, id) {}
  NodeId self() const override { return id_; }
  SimTime now() const override { return rt_.now_; }
  void send(Message message) override { rt_.send(id_, std::move(message)); }
  void set_timer(SimTime delay, int tag) override {
    rt_.queue_.push(rt_.now_ + std::max<SimTime>(delay, 0), kTimer, id_, static_cast<std::uint64_t>(tag));
  }
  void compute(std::int64_t samples, std::function<void()> work, int tag) override {
    rt_.start_job(id_, samples, std::move(work), tag);
  }
  Rng& rng(Purpose purpose) override { return rngs_.get(purpose); }
  MetricSink& metrics() override { return rt_.sink_; }
  void finish_round(int round) override { rt_.finish_round(round); }
  void stop() override { rt_.stopped_ = true; }

 private:
  SimRuntime& rt_;
  NodeId id_;
  NodeStreams rngs_;
};

SimRuntime::SimRuntime(NodeSet nodes, const Options& options, MetricSink& sink)
    : nodes_(std::move(nodes)), options_(options), sink_(sink),
      network_(options.network, static_cast<int>(nodes_.nodes.size())),
      speeds_(draw_speeds(options.compute, static_cast<int>(nodes_.nodes.size()), options.seed)) {
  for (std::size_t i = 0; i < nodes_.nodes.size(); ++i)
    contexts_.push_back(std::make_unique<NodeContext>(*this, static_cast<NodeId>(i)));
}

SimRuntime::~SimRuntime() = default;

template <typename T>
std::size_t SimRuntime::take_slot(std::vector<T>& slab, std::vector<std::size_t>& free_list) {
  if (free_list.empty()) {
    slab.emplace_back();
    return slab.size() - 1;
  }
  const std::size_t slot = free_list.back();
  free_list.pop_back();
  return slot;
}

void SimRuntime::send(NodeId src, Message message) {
  const auto n = static_cast<NodeId>(nodes_.nodes.size());
  if (message.receiver < 0 || message.receiver >= n)
    throw Error("node " + std::to_string(src) + " sent a message to node " + std::to_string(message.receiver) +
                ", which does not exist");
  message.sender = src;
  if (src == muted_ || !online(src, now_)) return;  // never transmitted: no bytes
  const std::int64_t bytes = message.wire_bytes();
  bytes_total_ += bytes;
  auto& link = traffic_[message.round][{src, message.receiver}];
  link.bytes += bytes;
  link.messages += 1;
  const SimTime at = network_.delivery_time(now_, src, message.receiver, bytes);
  const NodeId dst = message.receiver;
  const std::size_t slot = take_slot(messages_, free_messages_);
  messages_[slot] = std::move(message);
  queue_.push(at, kDeliver, dst, slot);
}

void SimRuntime::start_job(NodeId node, std::int64_t samples, std::function<void()> work, int tag) {
  const double speed = speeds_[static_cast<std::size_t>(node)];
  const SimTime duration = from_seconds(static_cast<double>(samples) / speed);
  const std::size_t slot = take_slot(jobs_, free_jobs_);
  // A job started offline never runs; it completes as lost.
  const bool offline = !online(node, now_);
  jobs_[slot] = Job{node, tag, offline ? std::function<void()>() : std::move(work), offline, now_};
  if (offline) {
    queue_.push(now_ + duration, kComputeDone, node, slot);
    return;
  }
  pending_jobs_.push_back(slot);
  queue_.push(now_ + duration, kComputeDone, node, slot);
}

bool SimRuntime::online(NodeId node, SimTime t) const {
  return !options_.availability || options_.availability->online(node, t);
}

void SimRuntime::run_pending_jobs() {
  // Every pending job captured its inputs when it started, so running them all now, in any
  // order and on any number of threads, gives the results they would have had one by one.
  tbb::parallel_for(std::size_t{0}, pending_jobs_.size(), std::size_t{1},
                    [&](std::size_t i) { jobs_[pending_jobs_[i]].work(); });
  for (auto slot : pending_jobs_) jobs_[slot].done = true;
  jobs_run_ += static_cast<std::int64_t>(pending_jobs_.size());
  pending_jobs_.clear();
}

void SimRuntime::finish_round(int round) {
  while (!traffic_.empty() && traffic_.begin()->first <= round) {
    for (const auto& [link, t] : traffic_.begin()->second)
      sink_.traffic(traffic_.begin()->first, link.first, link.second, t.bytes, t.messages);
    traffic_.erase(traffic_.begin());
  }
  sink_.metric(round, now_, kNoNode, "bytes_total", static_cast<double>(bytes_total_));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start_).count();
  sink_.metric(round, now_, kNoNode, "wall_seconds", wall);
  sink_.end_round(round);
}

SimRuntime::Outcome SimRuntime::run() {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(std::max(options_.threads, 1)));
  wall_start_ = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < nodes_.nodes.size(); ++i) queue_.push(0, kStart, static_cast<NodeId>(i), 0);
  while (!stopped_) {
    if (queue_.empty()) return Outcome::kIdle;
    if (options_.interrupt && options_.interrupt->load(std::memory_order_relaxed)) return Outcome::kInterrupted;
    const Event e = queue_.pop();
    now_ = e.time;
    ++events_;
    Node& node = *nodes_.nodes[static_cast<std::size_t>(e.node)];
    Context& ctx = *contexts_[static_cast<std::size_t>(e.node)];
    switch (e.kind) {
      case kStart:
        node.on_start(ctx);
        break;
      case kDeliver: {
        Message m = std::move(messages_[e.arg]);
        free_messages_.push_back(e.arg);
        if (!online(e.node, now_)) {
          ++undelivered_;
          break;
        }
        node.on_message(ctx, std::move(m));
        break;
      }
      case kTimer:
        node.on_timer(ctx, static_cast<int>(e.arg));
        break;
      case kComputeDone: {
        if (!jobs_[e.arg].done) run_pending_jobs();
        const int tag = jobs_[e.arg].tag;
        const SimTime start = jobs_[e.arg].start;
        jobs_[e.arg] = Job{};
        free_jobs_.push_back(e.arg);
        bool lost = options_.availability && !options_.availability->online_throughout(e.node, start, now_);
        // One draw per finished job from the node's own stream, in event order.
        if (options_.dropout > 0.0 && ctx.rng(Purpose::kDropout).uniform() < options_.dropout) lost = true;
        if (lost) {
          ++jobs_lost_;
          muted_ = e.node;  // the node's bookkeeping goes on; its sends are lost
        }
        node.on_compute_done(ctx, tag);
        muted_ = kNoNode;
        break;
      }
    }
  }
  return Outcome::kFinished;
}

}  // namespace starling
