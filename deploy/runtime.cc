#include "deploy/runtime.h"

#include <boost/asio/post.hpp>

namespace starling {

class GrpcRuntime::NodeContext final : public Context {
 public:
  NodeContext(GrpcRuntime& rt, NodeId id, std::uint64_t seed) : rt_(rt), id_(id), rngs_(seed, id) {}
  NodeId self() const override { return id_; }
  SimTime now() const override { return rt_.now(); }
  void send(Message message) override {
    message.sender = id_;
    rt_.host_.route(std::move(message));
  }
  void set_timer(SimTime delay, int tag) override {
    auto timer = std::make_shared<boost::asio::steady_timer>(rt_.io_, std::chrono::nanoseconds(std::max<SimTime>(delay, 0)));
    rt_.timers_.insert(timer);
    timer->async_wait([this, timer, tag](const boost::system::error_code& ec) {
      rt_.timers_.erase(timer);
      if (ec || rt_.stopped_) return;
      rt_.guarded(-1, [&] { rt_.nodes_.at(id_)->on_timer(*this, tag); });
    });
  }
  // Real compute takes the time it takes: `samples` only sizes the simulator's model of it.
  void compute(std::int64_t /*samples*/, std::function<void()> work, int tag) override {
    boost::asio::post(rt_.pool_, [this, work = std::move(work), tag] {
      std::string error;
      try {
        work();
      } catch (const std::exception& e) {
        error = e.what();
      }
      boost::asio::post(rt_.io_, [this, tag, error] {
        if (rt_.stopped_) return;
        if (!error.empty()) return rt_.host_.fail("node " + std::to_string(id_) + "'s compute job: " + error);
        rt_.guarded(-1, [&] { rt_.nodes_.at(id_)->on_compute_done(*this, tag); });
      });
    });
  }
  Rng& rng(Purpose purpose) override { return rngs_.get(purpose); }
  MetricSink& metrics() override { return rt_.host_.sink(); }
  void finish_round(int round) override { rt_.host_.finish_round(round); }
  void stop() override { rt_.host_.stop(); }

 private:
  GrpcRuntime& rt_;
  NodeId id_;
  NodeStreams rngs_;
};

GrpcRuntime::GrpcRuntime(boost::asio::io_context& io, NodeSet nodes, const std::vector<NodeId>& hosted,
                         std::uint64_t seed, int threads, RuntimeHost& host)
    : io_(io), pool_(static_cast<std::size_t>(std::max(threads, 1))), host_(host),
      start_(std::chrono::steady_clock::now()) {
  for (NodeId id : hosted) {
    if (id < 0 || static_cast<std::size_t>(id) >= nodes.nodes.size() || !nodes.nodes[static_cast<std::size_t>(id)])
      throw Error("cannot host node " + std::to_string(id) + ": the run has no such node");
    nodes_[id] = std::move(nodes.nodes[static_cast<std::size_t>(id)]);
    contexts_[id] = std::make_unique<NodeContext>(*this, id, seed);
  }
  probe_ = std::move(nodes.probe);
  monitor_ = std::make_unique<NodeContext>(*this, kNoNode, seed);
}

GrpcRuntime::~GrpcRuntime() { shutdown(); }

template <typename F>
void GrpcRuntime::guarded(int origin, F&& handler) {
  try {
    handler();
  } catch (const std::exception& e) {
    if (origin >= 0) host_.reject(origin, e.what());
    else host_.fail(e.what());
  }
}

void GrpcRuntime::start() {
  start_ = std::chrono::steady_clock::now();  // the run's clock starts with the run, not with the joins
  for (auto& [id, node] : nodes_) {
    if (stopped_) return;
    guarded(-1, [&] { node->on_start(*contexts_.at(id)); });
  }
}

void GrpcRuntime::deliver(Message message, int origin) {
  if (stopped_) return;
  const auto it = nodes_.find(message.receiver);
  if (it == nodes_.end()) {
    const std::string why = "a message for node " + std::to_string(message.receiver) + ", which this process does not host";
    if (origin >= 0) host_.reject(origin, why);
    else host_.fail(why);
    return;
  }
  guarded(origin, [&] { it->second->on_message(*contexts_.at(message.receiver), std::move(message)); });
}

void GrpcRuntime::record(Observation observation, int origin) {
  if (stopped_) return;
  if (!probe_) return host_.reject(origin, "an observation, but this run's protocol has no probe to record it");
  guarded(origin, [&] { probe_->record(*monitor_, std::move(observation)); });
}

SimTime GrpcRuntime::now() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
}

void GrpcRuntime::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  for (const auto& t : timers_) t->cancel();
  timers_.clear();
  pool_.join();  // jobs reference their nodes: they finish before the nodes go
}

}  // namespace starling
