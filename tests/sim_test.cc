// sim/: event queue, network and compute models, the SimRuntime engine.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "sim/event_queue.h"
#include "sim/network.h"
#include "sim/sim_runtime.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

// ---------------------------------------------------------------- EventQueue

TEST(EventQueue, PopsInTimeOrder) {
  EventQueue q;
  q.push(30, 0, 0, 3);
  q.push(10, 0, 0, 1);
  q.push(20, 0, 0, 2);
  q.push(5, 0, 0, 0);
  ASSERT_EQ(q.size(), 4u);
  EXPECT_EQ(q.top().arg, 0u);
  std::vector<std::uint64_t> order;
  while (!q.empty()) order.push_back(q.pop().arg);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{0, 1, 2, 3}));
}

TEST(EventQueue, TiesRunInInsertionOrder) {
  EventQueue q;
  for (std::uint64_t i = 0; i < 50; ++i) q.push(100, static_cast<std::uint32_t>(i % 3), static_cast<NodeId>(49 - i), i);
  q.push(99, 0, 0, 1000);
  EXPECT_EQ(q.pop().arg, 1000u);
  std::uint64_t expected = 0, last_seq = 0;
  while (!q.empty()) {
    const Event e = q.pop();
    EXPECT_EQ(e.arg, expected);
    EXPECT_EQ(e.node, static_cast<NodeId>(49 - expected));
    EXPECT_EQ(e.kind, expected % 3);
    if (expected > 0) {
      EXPECT_GT(e.seq, last_seq);
    }
    last_seq = e.seq;
    ++expected;
  }
  EXPECT_EQ(expected, 50u);
}

TEST(EventQueue, ManyRandomPushesPopSorted) {
  EventQueue q;
  Rng rng(1, 0, Purpose::kTest);
  struct Pushed {
    SimTime time;
    std::uint64_t id;
  };
  std::vector<Pushed> pushed;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    const SimTime t = static_cast<SimTime>(rng.below(500));  // many ties
    q.push(t, 0, 0, i);
    pushed.push_back({t, i});
  }
  std::stable_sort(pushed.begin(), pushed.end(), [](const Pushed& a, const Pushed& b) { return a.time < b.time; });
  for (const auto& p : pushed) {
    ASSERT_FALSE(q.empty());
    const Event e = q.pop();
    ASSERT_EQ(e.time, p.time);
    ASSERT_EQ(e.arg, p.id);
  }
  EXPECT_TRUE(q.empty());
}

TEST(EventQueue, InterleavedPushAndPopStayOrdered) {
  // The simulator's pattern: pop the earliest event, schedule a few at or after it.
  EventQueue q;
  Rng rng(2, 0, Purpose::kTest);
  for (int i = 0; i < 10; ++i) q.push(static_cast<SimTime>(rng.below(100)), 0, 0, 0);
  SimTime last_time = -1;
  std::uint64_t last_seq = 0;
  int popped = 0;
  while (!q.empty() && popped < 50000) {
    const Event e = q.pop();
    ++popped;
    ASSERT_TRUE(e.time > last_time || (e.time == last_time && e.seq > last_seq))
        << "event (" << e.time << ", " << e.seq << ") after (" << last_time << ", " << last_seq << ")";
    last_time = e.time;
    last_seq = e.seq;
    if (popped < 40000)
      for (std::uint64_t k = 1 + rng.below(2); k > 0; --k) q.push(e.time + static_cast<SimTime>(rng.below(4)), 0, 0, 0);
  }
  EXPECT_EQ(popped, 50000);
}

// ---------------------------------------------------------------- Network

TEST(Network, DeliveryTimeWithoutQueueing) {
  NetworkParams p;
  p.latency_s = 0.02;
  p.uplink_bps = 100e6;
  p.downlink_bps = 50e6;
  Network net(p, 4);
  // 1,000,000 bytes = 8e6 bits at min(100, 50) Mbit/s = 0.16 s, plus 20 ms latency.
  const SimTime t0 = 3 * kNanosPerSecond;
  EXPECT_EQ(net.delivery_time(t0, 1, 2, 1'000'000), t0 + 20'000'000 + 160'000'000);
  // Back-to-back messages from the same sender do not wait for each other.
  EXPECT_EQ(net.delivery_time(t0, 1, 2, 1'000'000), t0 + 180'000'000);
  EXPECT_EQ(net.delivery_time(t0, 1, 3, 1'000'000), t0 + 180'000'000);
  EXPECT_EQ(net.transfer_time(1'000'000), 160'000'000);
  EXPECT_EQ(net.delivery_time(0, 0, 1, 0), 20'000'000);
  // The general formula on an odd size: t + latency + bytes * 8 / min(up, down).
  const std::int64_t bytes = 31432;
  EXPECT_EQ(net.delivery_time(t0, 2, 0, bytes), t0 + from_seconds(0.02) + from_seconds(bytes * 8.0 / 50e6));
}

TEST(Network, QueueingSerialisesTheSendersUplink) {
  NetworkParams p;
  p.latency_s = 0.01;
  p.uplink_bps = p.downlink_bps = 8e6;  // 1 MB/s: 1000 bytes take 1 ms
  p.queueing = true;
  Network net(p, 4);
  const SimTime ms = 1'000'000;
  // Two back-to-back messages from node 0: the second starts when the first has left.
  EXPECT_EQ(net.delivery_time(0, 0, 1, 1000), 1 * ms + 10 * ms);
  EXPECT_EQ(net.delivery_time(0, 0, 2, 1000), 2 * ms + 10 * ms);
  // Another sender to another receiver is not affected.
  EXPECT_EQ(net.delivery_time(0, 3, 3, 1000), 1 * ms + 10 * ms);
  // A receiver's downlink serialises messages from different senders (node 1 busy until 1 ms).
  EXPECT_EQ(net.delivery_time(0, 2, 1, 1000), 2 * ms + 10 * ms);
  // Once the links are idle again, there is no wait.
  EXPECT_EQ(net.delivery_time(100 * ms, 0, 1, 1000), 101 * ms + 10 * ms);
}

TEST(ComputeSpeeds, FixedAndLognormalPerNodeStreams) {
  ComputeParams fixed;
  fixed.samples_per_sec = 1234.0;
  for (double s : draw_speeds(fixed, 5, 1)) EXPECT_EQ(s, 1234.0);
  ComputeParams ln;
  ln.kind = ComputeParams::Kind::kLognormal;
  ln.samples_per_sec = 1000.0;
  ln.sigma = 0.5;
  const auto a = draw_speeds(ln, 2000, 7), b = draw_speeds(ln, 10, 7);
  // Adding nodes never changes the speeds of the existing ones.
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin()));
  EXPECT_NE(draw_speeds(ln, 10, 8), b);
  double log_sum = 0.0;
  for (double s : a) {
    EXPECT_GT(s, 0.0);
    log_sum += std::log(s / 1000.0);
  }
  EXPECT_NEAR(log_sum / 2000, 0.0, 0.05);  // the configured speed is the median
}

// ---------------------------------------------------------------- SimRuntime

// A two-node ping-pong: node 0 sends `bytes` to node 1, which computes for `samples` samples and
// replies; node 0 then closes round 1 and stops.
struct Trace {
  SimTime ping_arrival = -1, compute_done = -1, pong_arrival = -1, timer = -1;
  bool work_ran = false;
};

class Pinger final : public Node {
 public:
  explicit Pinger(Trace& t) : t_(t) {}
  void on_start(Context& ctx) override {
    Message m;
    m.round = 1;
    m.receiver = 1;
    m.set_payload(Payload(968));  // 1000 bytes on the wire
    ctx.send(std::move(m));
    ctx.set_timer(5 * kNanosPerSecond, 7);
  }
  void on_message(Context& ctx, Message&& m) override {
    EXPECT_EQ(m.sender, 1);
    EXPECT_EQ(m.kind, MessageKind::kUpdate);
    t_.pong_arrival = ctx.now();
    ctx.metrics().metric(1, ctx.now(), kNoNode, "custom", 42.0);
    ctx.metrics().metric(1, ctx.now(), 1, "per_node", 1.5);
    ctx.finish_round(1);
  }
  void on_timer(Context& ctx, int tag) override {
    EXPECT_EQ(tag, 7);
    t_.timer = ctx.now();
    ctx.stop();
  }

 private:
  Trace& t_;
};

class Ponger final : public Node {
 public:
  explicit Ponger(Trace& t) : t_(t) {}
  void on_message(Context& ctx, Message&& m) override {
    EXPECT_EQ(m.sender, 0);
    EXPECT_EQ(ctx.self(), 1);
    t_.ping_arrival = ctx.now();
    ctx.compute(500, [this] { t_.work_ran = true; }, 3);
  }
  void on_compute_done(Context& ctx, int tag) override {
    EXPECT_EQ(tag, 3);
    EXPECT_TRUE(t_.work_ran);
    t_.compute_done = ctx.now();
    Message reply;
    reply.kind = MessageKind::kUpdate;
    reply.round = 1;
    reply.receiver = 0;
    reply.set_payload(Payload(1968));  // 2000 bytes on the wire
    ctx.send(std::move(reply));
  }

 private:
  Trace& t_;
};

SimRuntime::Options ping_options() {
  SimRuntime::Options o;
  o.network.latency_s = 0.01;
  o.network.uplink_bps = o.network.downlink_bps = 8e6;  // 1000 bytes per ms
  o.compute.samples_per_sec = 1000.0;
  return o;
}

TEST(SimRuntime, MessagesComputeAndTimersFollowVirtualTime) {
  Trace t;
  NodeSet nodes;
  nodes.nodes.push_back(std::make_unique<Pinger>(t));
  nodes.nodes.push_back(std::make_unique<Ponger>(t));
  MemorySink sink;
  SimRuntime rt(std::move(nodes), ping_options(), sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  const SimTime ms = 1'000'000;
  EXPECT_EQ(t.ping_arrival, 11 * ms);                    // 1 ms transfer + 10 ms latency
  EXPECT_EQ(t.compute_done, 11 * ms + 500 * ms);         // 500 samples at 1000 samples/s
  EXPECT_EQ(t.pong_arrival, 511 * ms + 2 * ms + 10 * ms);
  EXPECT_EQ(t.timer, 5000 * ms);
  EXPECT_EQ(rt.now(), 5000 * ms);
  EXPECT_EQ(rt.bytes_total(), 3000);
  EXPECT_EQ(rt.jobs_run(), 1);

  // finish_round(1): the node's metrics, then traffic, bytes_total and wall_seconds, then commit.
  ASSERT_EQ(sink.ended, std::vector<int>{1});
  std::vector<std::string> names;
  for (const auto& m : sink.metrics) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"custom", "per_node", "bytes_total", "wall_seconds"}));
  EXPECT_EQ(sink.last("bytes_total"), 3000.0);
  EXPECT_GE(sink.last("wall_seconds"), 0.0);
  EXPECT_EQ(sink.metrics[2].time, 523 * ms);
  EXPECT_EQ(sink.metrics[1].node, 1);
  using T = MemorySink::Traffic;
  EXPECT_EQ(sink.traffic_rows, (std::vector<T>{{1, 0, 1, 1000, 1}, {1, 1, 0, 2000, 1}}));
}

class Silent final : public Node {
 public:
  void on_message(Context&, Message&&) override {}
};

class Chatty final : public Node {  // sends to itself forever
 public:
  void on_start(Context& ctx) override { on_message(ctx, Message{}); }
  void on_message(Context& ctx, Message&&) override {
    Message m;
    m.receiver = 0;
    ctx.send(std::move(m));
  }
};

TEST(SimRuntime, IdleAndInterruptedOutcomes) {
  {
    NodeSet nodes;
    nodes.nodes.push_back(std::make_unique<Silent>());
    MemorySink sink;
    SimRuntime rt(std::move(nodes), ping_options(), sink);
    EXPECT_EQ(rt.run(), SimRuntime::Outcome::kIdle);
  }
  {
    NodeSet nodes;
    nodes.nodes.push_back(std::make_unique<Chatty>());
    MemorySink sink;
    std::atomic<bool> flag{true};
    auto options = ping_options();
    options.interrupt = &flag;
    SimRuntime rt(std::move(nodes), options, sink);
    EXPECT_EQ(rt.run(), SimRuntime::Outcome::kInterrupted);
  }
}

class BadSender final : public Node {
 public:
  void on_start(Context& ctx) override {
    Message m;
    m.receiver = 5;
    ctx.send(std::move(m));
  }
  void on_message(Context&, Message&&) override {}
};

TEST(SimRuntime, SendingToAMissingNodeIsAnError) {
  NodeSet nodes;
  nodes.nodes.push_back(std::make_unique<BadSender>());
  MemorySink sink;
  SimRuntime rt(std::move(nodes), ping_options(), sink);
  EXPECT_THROW(rt.run(), Error);
}

// Several nodes start jobs at once; they are batched and completed in event order.
class Worker final : public Node {
 public:
  Worker(std::vector<std::pair<NodeId, SimTime>>& done, std::int64_t samples) : done_(done), samples_(samples) {}
  void on_start(Context& ctx) override {
    ctx.compute(samples_, [this] { value_ = static_cast<double>(samples_) * 2; }, 0);
  }
  void on_message(Context&, Message&&) override {}
  void on_compute_done(Context& ctx, int) override {
    EXPECT_EQ(value_, static_cast<double>(samples_) * 2);
    done_.push_back({ctx.self(), ctx.now()});
  }

 private:
  std::vector<std::pair<NodeId, SimTime>>& done_;
  std::int64_t samples_;
  double value_ = 0.0;
};

TEST(SimRuntime, ConcurrentJobsCompleteInTimeOrder) {
  std::vector<std::pair<NodeId, SimTime>> done;
  NodeSet nodes;
  const std::vector<std::int64_t> samples = {300, 100, 200, 100, 50};
  for (auto s : samples) nodes.nodes.push_back(std::make_unique<Worker>(done, s));
  MemorySink sink;
  auto options = ping_options();
  options.threads = 2;
  SimRuntime rt(std::move(nodes), options, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kIdle);
  EXPECT_EQ(rt.jobs_run(), 5);
  const SimTime ms = 1'000'000;
  EXPECT_EQ(done, (std::vector<std::pair<NodeId, SimTime>>{
                      {4, 50 * ms}, {1, 100 * ms}, {3, 100 * ms}, {2, 200 * ms}, {0, 300 * ms}}));
}

}  // namespace
}  // namespace starling
