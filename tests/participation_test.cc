// Partial participation: availability models (Markov, trace), dropout, deadlines with
// over-selection, link noise; through the models' API, the SimRuntime and whole FedAvg runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "config/experiment.h"
#include "learning/training.h"
#include "nodes/server_client.h"
#include "run_util.h"
#include "sim/availability.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

// A file in the temporary folder, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name, const std::string& text)
      : path((std::filesystem::temp_directory_path() / ("starling_participation_" + name)).string()) {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

// ---------------------------------------------------------------- Markov model

TEST(MarkovAvailability, OnlineFractionMatchesOnOverOnPlusOff) {
  const double on = 30.0, off = 10.0, p = on / (on + off);
  // Across nodes at one moment: Binomial(n, p).
  const int n = 4000;
  MarkovAvailability many(7, n + 1, 1, on, off);
  int online = 0;
  for (NodeId i = 1; i <= n; ++i) online += many.online(i, from_seconds(5000.0));
  EXPECT_NEAR(online / static_cast<double>(n), p, 5.0 * std::sqrt(p * (1 - p) / n));
  EXPECT_TRUE(many.online(0, from_seconds(5000.0)));  // before `first`: the server, always online
  // One node over time: the time average of a two-state chain with switch rates a + b has
  // variance about 2 p (1 - p) / ((a + b) T).
  MarkovAvailability one(8, 2, 1, on, off);
  const double horizon = 1e6, rate = 1.0 / on + 1.0 / off;
  long hits = 0, samples = 0;
  for (double t = 0.0; t < horizon; t += 1.0, ++samples) hits += one.online(1, from_seconds(t));
  EXPECT_NEAR(hits / static_cast<double>(samples), p, 5.0 * std::sqrt(2.0 * p * (1 - p) / (rate * horizon)));
}

TEST(MarkovAvailability, AnswersDoNotDependOnTheOrderOfQuestions) {
  MarkovAvailability forward(3, 6, 1, 5.0, 7.0), backward(3, 6, 1, 5.0, 7.0);
  std::vector<SimTime> times;
  for (int k = 0; k < 2000; ++k) times.push_back(from_seconds(0.37 * k));
  std::map<std::pair<NodeId, SimTime>, bool> a;
  for (NodeId i = 1; i < 6; ++i)
    for (SimTime t : times) a[{i, t}] = forward.online(i, t);
  for (NodeId i = 5; i >= 1; --i)
    for (auto it = times.rbegin(); it != times.rend(); ++it) EXPECT_EQ(backward.online(i, *it), (a[{i, *it}]));
  // online_throughout agrees with a fine grid of online().
  int agree_on = 0;
  for (int k = 0; k + 20 < 2000; k += 7) {
    bool all = true;
    for (int j = 0; j <= 20; ++j) all = all && forward.online(2, times[static_cast<std::size_t>(k + j)]);
    const bool through = forward.online_throughout(2, times[static_cast<std::size_t>(k)], times[static_cast<std::size_t>(k + 20)]);
    if (through) {
      EXPECT_TRUE(all) << k;
    }
    if (!all) {
      EXPECT_FALSE(through) << k;
    }
    agree_on += through;
  }
  EXPECT_GT(agree_on, 0);
}

// ---------------------------------------------------------------- Trace model

TEST(TraceAvailability, IntervalsAreHalfOpenAndMerge) {
  TempFile f("trace_ok.csv",
             "node,start,end\n# a comment\n1,0,10\n1,10,20\n1,30,40\n2, 5 , 6\n\n2,5.5,8\n");
  TraceAvailability t(f.path, 4, 1, "availability.path");
  const auto at = [](double s) { return from_seconds(s); };
  EXPECT_TRUE(t.online(1, at(0)));
  EXPECT_TRUE(t.online(1, at(19.999)));
  EXPECT_FALSE(t.online(1, at(20)));  // end is exclusive
  EXPECT_FALSE(t.online(1, at(25)));
  EXPECT_TRUE(t.online(1, at(30)));
  EXPECT_TRUE(t.online_throughout(1, at(2), at(19)));  // [0, 10) and [10, 20) merged
  EXPECT_FALSE(t.online_throughout(1, at(15), at(31)));
  EXPECT_TRUE(t.online_throughout(2, at(5), at(7.9)));  // overlapping intervals merged
  EXPECT_FALSE(t.online(2, at(4.9)));
  EXPECT_FALSE(t.online(3, at(1)));  // no line: never online
  EXPECT_TRUE(t.online(0, at(1)));   // the server
}

TEST(TraceAvailability, BadFilesNameTheFileAndLine) {
  const auto expect_error = [](const std::string& text, const std::string& part) {
    TempFile f("trace_bad.csv", text);
    try {
      TraceAvailability t(f.path, 4, 1, "availability.path");
      ADD_FAILURE() << "no error for " << text;
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.key_path(), "availability.path");
      EXPECT_NE(what.find(part), std::string::npos) << what;
    }
  };
  expect_error("node,start,end\n1,0,5\n1,2\n", "trace_bad.csv:3: expected 3 comma-separated fields (node,start,end), found 2");
  expect_error("1,0,x5\n", "trace_bad.csv:1: end \"x5\" is not a number");
  expect_error("1,0,5\n2,7,7\n", "trace_bad.csv:2: interval [7, 7) must have 0 <= start < end");
  expect_error("0,0,5\n", "trace_bad.csv:1: node 0 is not a client node; client nodes are 1 to 3");
  expect_error("4,0,5\n", "node 4 is not a client node");
  expect_error("1.5,0,5\n", "node 1.5 is not a client node");
  expect_error("1,-1,5\n", "must have 0 <= start < end");
  EXPECT_THROW(TraceAvailability("/nonexistent/trace.csv", 4, 1, "availability.path"), ConfigError);
}

// ---------------------------------------------------------------- The runtime enforces it

// Every node but 0 tries to train every `period`: a job of `samples` samples; its completion
// reports the job's start time to node 0, which records what arrives.
class Trainer final : public Node {
 public:
  std::vector<SimTime> ran;  // start times of jobs whose work really ran (only this node's jobs touch it)
  void on_start(Context& ctx) override {
    if (ctx.self() != 0) ctx.set_timer(from_seconds(0.5), 0);
  }
  void on_timer(Context& ctx, int) override {
    ctx.set_timer(from_seconds(3.0), 0);
    if (busy_) return;
    busy_ = true;
    start_ = ctx.now();
    ctx.compute(2000, [this, start = ctx.now()] { ran.push_back(start); }, 0);  // 2 s at 1000 samples/s
  }
  void on_compute_done(Context& ctx, int) override {
    busy_ = false;
    Message m;
    m.kind = MessageKind::kUpdate;
    m.receiver = 0;
    m.num_samples = start_;
    ctx.send(std::move(m));
  }
  void on_message(Context& ctx, Message&& m) override {
    received.push_back({m.sender, m.num_samples, ctx.now()});
    if (ctx.now() > from_seconds(2000.0)) ctx.stop();
  }
  struct Report {
    NodeId sender;
    SimTime start, arrival;
  };
  std::vector<Report> received;

 private:
  bool busy_ = false;
  SimTime start_ = 0;
};

void expect_no_offline_training(std::shared_ptr<const Availability> availability, double dropout) {
  NodeSet set;
  std::vector<Trainer*> nodes;
  for (int i = 0; i < 9; ++i) {
    auto n = std::make_unique<Trainer>();
    nodes.push_back(n.get());
    set.nodes.push_back(std::move(n));
  }
  SimRuntime::Options options;
  options.network.latency_s = 0.01;
  options.seed = 3;
  options.availability = availability;
  options.dropout = dropout;
  MemorySink sink;
  SimRuntime rt(std::move(set), options, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  const SimTime job = from_seconds(2.0);
  std::size_t jobs = 0;
  for (std::size_t i = 1; i < nodes.size(); ++i)
    for (SimTime start : nodes[i]->ran) {  // no work ran on a node offline when it started
      EXPECT_TRUE(availability->online(static_cast<NodeId>(i), start)) << "node " << i << " at " << start;
      ++jobs;
    }
  const auto& received = nodes[0]->received;
  for (const auto& r : received)  // every update that arrived came from a job online throughout
    EXPECT_TRUE(availability->online_throughout(r.sender, r.start, r.start + job)) << r.sender << " " << r.start;
  EXPECT_GT(received.size(), 100u);
  EXPECT_GT(rt.jobs_lost(), 0);
  EXPECT_GE(static_cast<std::int64_t>(jobs), static_cast<std::int64_t>(received.size()));
}

TEST(RuntimeAvailability, NoOfflineNodeEverTrainsMarkov) {
  expect_no_offline_training(std::make_shared<MarkovAvailability>(11, 9, 1, 8.0, 4.0), 0.0);
}

TEST(RuntimeAvailability, NoOfflineNodeEverTrainsTrace) {
  std::ostringstream text;
  text << "node,start,end\n";
  for (int i = 1; i < 9; ++i)
    for (int k = 0; k < 200; ++k) text << i << "," << 10 * k + i << "," << 10 * k + i + 4 + k % 3 << "\n";
  TempFile f("trace_runtime.csv", text.str());
  expect_no_offline_training(std::make_shared<TraceAvailability>(f.path, 9, 1, "availability.path"), 0.0);
}

// ---------------------------------------------------------------- FedAvg runs

const std::string kConfig = R"yaml(
seed: 5
rounds: 12
data: { dataset: synthetic, clients: 20, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: fedavg, local_steps: 5 }
sampling: { kind: uniform, fraction: 0.2 }
compute: { kind: lognormal, sigma: 1.0, samples_per_sec: 500 }
eval: { every: 4 }
)yaml";

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides) { return test::plan_from(kConfig, overrides); }

std::vector<MemorySink::Metric> rows(const MemorySink& s, const std::string& name) {
  std::vector<MemorySink::Metric> out;
  for (const auto& m : s.metrics)
    if (m.name == name) out.push_back(m);
  return out;
}

double sum(const MemorySink& s, const std::string& name) {
  double total = 0.0;
  for (const auto& m : rows(s, name)) total += m.value;
  return total;
}

void expect_identical(const MemorySink& a, const MemorySink& b) {
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  for (std::size_t i = 0; i < a.metrics.size(); ++i) {
    if (a.metrics[i].name == "wall_seconds") continue;
    EXPECT_EQ(a.metrics[i].name, b.metrics[i].name);
    EXPECT_EQ(a.metrics[i].node, b.metrics[i].node);
    EXPECT_EQ(a.metrics[i].time, b.metrics[i].time) << a.metrics[i].name;
    EXPECT_EQ(std::memcmp(&a.metrics[i].value, &b.metrics[i].value, sizeof(double)), 0)
        << a.metrics[i].name << " round " << a.metrics[i].round;
  }
  EXPECT_EQ(a.traffic_rows, b.traffic_rows);
}

// Runs an over-selecting FedAvg (K = 4 of 20, 6 asked) and replays its arrivals from the
// network and compute models: each round must aggregate exactly the first K updates to arrive.
void expect_fastest_k(const std::vector<std::string>& overrides) {
  auto o = overrides;
  o.insert(o.end(), {"protocol.overselect=1.5", "rounds=15"});
  auto p = plan(o);
  const int d = static_cast<int>(p->model->num_params());
  const auto speeds = draw_speeds(p->sim.compute, 21, p->seed);
  const Network net(p->sim.network, 21);
  const std::int64_t bytes = Message::kHeaderBytes + 4 * d;
  const SimTime latency = from_seconds(p->sim.network.latency_s);
  const auto& partition = p->task->partition;
  const std::int64_t steps = 5, batch = 16;
  auto sink = test::run_plan(*p);
  // Round r starts when r - 1 closed; a client starts training when the model arrives or when its
  // previous job ends, whichever is later.
  std::map<int, std::set<NodeId>> contacted, aggregated;
  for (const auto& t : sink.traffic_rows)
    if (t.src == 0) contacted[t.round].insert(t.dst);
  for (const auto& m : rows(sink, "aggregated")) aggregated[m.round].insert(m.node);
  std::map<int, SimTime> closed;
  for (const auto& m : rows(sink, "participants")) closed[m.round] = m.time;
  std::vector<SimTime> free(21, 0);
  for (int r = 1; r <= 15; ++r) {
    const SimTime start = r == 1 ? 0 : closed[r - 1];
    ASSERT_EQ(contacted[r].size(), 6u) << r;
    std::vector<std::pair<SimTime, NodeId>> arrivals;
    for (NodeId c : contacted[r]) {
      const auto n = static_cast<std::int64_t>(partition[static_cast<std::size_t>(c - 1)].size());
      const std::int64_t samples = samples_in_batches(n, batch, steps);
      const SimTime begin = std::max(start + latency + net.transfer_time(bytes, 0, c), free[static_cast<std::size_t>(c)]);
      const SimTime end = begin + from_seconds(static_cast<double>(samples) / speeds[static_cast<std::size_t>(c)]);
      free[static_cast<std::size_t>(c)] = end;
      arrivals.push_back({end + latency + net.transfer_time(bytes, c, 0), c});
    }
    std::sort(arrivals.begin(), arrivals.end());
    std::set<NodeId> fastest;
    for (int k = 0; k < 4; ++k) fastest.insert(arrivals[static_cast<std::size_t>(k)].second);
    EXPECT_EQ(aggregated[r], fastest) << "round " << r;
    EXPECT_EQ(closed[r], arrivals[3].first) << "round " << r;  // the K-th arrival closes the round
  }
  EXPECT_GT(sum(sink, "late_updates"), 0.0);  // the slow third arrived after its round closed
}

TEST(OverSelection, KeepsExactlyTheFirstKUpdatesToArrive) { expect_fastest_k({}); }

TEST(OverSelection, KeepsTheFirstKWithPerClientLinksAndAProfile) {
  // Slow links matter: 1 Mbit/s median with a wide spread, and a profile that makes client 3
  // (node 4) very fast at compute but on a slow uplink.
  TempFile f("profile.csv", "node,speed,uplink_bps,downlink_bps\n4,1e6,2e5,1e7\n7,50,1e8,1e8\n");
  auto p = plan({"network.bandwidth_mbps=1", "network.bandwidth_sigma=1", "profile=" + f.path});
  EXPECT_EQ(p->sim.compute.node_speeds[4], 1e6);
  EXPECT_EQ(p->sim.network.uplink(4), 2e5);
  EXPECT_EQ(p->sim.network.downlink(7), 1e8);
  EXPECT_EQ(p->sim.network.uplink(0), 1e6);  // the server keeps the configured rate
  EXPECT_NE(p->sim.network.uplink(1), 1e6);
  expect_fastest_k({"network.bandwidth_mbps=1", "network.bandwidth_sigma=1", "profile=" + f.path});
}

TEST(ClientProfile, BandwidthsAreLognormalAroundTheConfiguredRate) {
  auto p = plan({"data.clients=600", "network.bandwidth_mbps=10", "network.bandwidth_sigma=0.7"});
  std::vector<double> logs;
  for (NodeId i = 1; i <= 600; ++i)
    for (double bps : {p->sim.network.uplink(i), p->sim.network.downlink(i)}) logs.push_back(std::log(bps / 10e6));
  double mean = 0.0, var = 0.0;
  for (double l : logs) mean += l / static_cast<double>(logs.size());
  for (double l : logs) var += (l - mean) * (l - mean) / static_cast<double>(logs.size() - 1);
  EXPECT_NEAR(mean, 0.0, 5.0 * 0.7 / std::sqrt(1200.0));
  EXPECT_NEAR(std::sqrt(var), 0.7, 5.0 * 0.7 / std::sqrt(2.0 * 1200.0));
}

TEST(Deadline, ClosesRoundsOnTimeAndIgnoresLateUpdates) {
  auto sink = test::run_plan(*plan({"protocol.deadline=0.3", "sampling.fraction=0.5"}));
  SimTime previous = 0;
  int partial = 0;
  for (const auto& m : rows(sink, "participants")) {
    EXPECT_LE(m.time - previous, from_seconds(0.3)) << m.round;
    if (m.value < 10) ++partial;
    previous = m.time;
  }
  EXPECT_GT(partial, 0);  // slow clients missed some deadlines
  for (const auto& m : rows(sink, "participants")) EXPECT_LE(m.value, 10);
}

TEST(Dropout, LosesTheConfiguredShareOfUpdates) {
  // A generous deadline: every update that is not dropped arrives in time.
  auto sink = test::run_plan(*plan({"availability.dropout=0.3", "protocol.deadline=1000", "rounds=60",
                                    "sampling.fraction=0.5", "compute.sigma=0", "eval.every=60"}));
  const double contacted = sum(sink, "contacted"), arrived = sum(sink, "participants");
  ASSERT_EQ(contacted, 600.0);
  EXPECT_NEAR(arrived / contacted, 0.7, 5.0 * std::sqrt(0.3 * 0.7 / contacted));
  EXPECT_EQ(sum(sink, "late_updates"), 0.0);
}

TEST(MarkovFedAvg, ContactsOnlyOnlineClients) {
  const std::vector<std::string> o = {"availability.kind=markov", "availability.mean_online_s=4",
                                      "availability.mean_offline_s=4", "protocol.deadline=3", "rounds=30",
                                      "sampling.fraction=0.4", "eval.every=30"};
  for (const std::string kind : {"uniform", "available"}) {
    auto p = plan([&] { auto v = o; v.push_back("sampling.kind=" + kind); return v; }());
    const auto availability = p->sim.availability;
    auto sink = test::run_plan(*p);
    std::map<int, SimTime> closed;
    for (const auto& m : rows(sink, "participants")) closed[m.round] = m.time;
    std::map<int, std::set<NodeId>> contacted;
    for (const auto& t : sink.traffic_rows)
      if (t.src == 0) contacted[t.round].insert(t.dst);
    int short_rounds = 0;
    for (const auto& [round, nodes] : contacted) {
      const SimTime start = round == 1 ? 0 : closed[round - 1];
      int online = 0;
      for (NodeId c = 1; c <= 20; ++c) online += availability->online(c, start);
      for (NodeId c : nodes) EXPECT_TRUE(availability->online(c, start)) << kind << " round " << round << " node " << c;
      if (kind == "available") {
        EXPECT_EQ(static_cast<int>(nodes.size()), std::min(8, online)) << round;
      }
      short_rounds += static_cast<int>(nodes.size()) < 8;
    }
    if (kind == "uniform") {
      EXPECT_GT(short_rounds, 10);  // blind draws hit offline clients
    }
    for (const auto& m : rows(sink, "aggregated")) {  // and what was aggregated came from online clients
      const SimTime start = m.round == 1 ? 0 : closed[m.round - 1];
      EXPECT_TRUE(availability->online(m.node, start));
    }
  }
}

TEST(LinkNoise, HasTheConfiguredVariance) {
  Rng rng(1, 2, Purpose::kLinkNoise);
  Vector v = Vector::Constant(200000, 1.5f);
  add_link_noise(v, 0.3, rng);
  const double mean = (v.array() - 1.5f).cast<double>().mean();
  const double var = (v.array() - 1.5f).cast<double>().square().mean();
  EXPECT_NEAR(mean, 0.0, 5.0 * 0.3 / std::sqrt(200000.0));
  EXPECT_NEAR(var, 0.09, 5.0 * 0.09 * std::sqrt(2.0 / 200000.0));
  Vector w = Vector::Constant(10, 1.5f);
  Rng untouched(1, 2, Purpose::kLinkNoise);
  add_link_noise(w, 0.0, untouched);
  EXPECT_TRUE((w.array() == 1.5f).all());
  EXPECT_EQ(untouched.position(), 0u);  // std 0 draws nothing
}

TEST(LinkNoise, ZeroIsBitIdenticalAndNoiseChangesTheRun) {
  const auto base = test::run_plan(*plan({}));
  expect_identical(base, test::run_plan(*plan({"network.noise_std=0"})));
  const auto noisy = test::run_plan(*plan({"network.noise_std=0.05"}));
  EXPECT_NE(base.last("test_loss"), noisy.last("test_loss"));
  EXPECT_EQ(base.last("bytes_total"), noisy.last("bytes_total"));
}

TEST(Participation, DeterministicAcrossThreadCounts) {
  const std::vector<std::string> o = {"availability.kind=markov", "availability.mean_online_s=6",
                                      "availability.mean_offline_s=3", "availability.dropout=0.1",
                                      "protocol.deadline=2", "protocol.overselect=1.3", "network.noise_std=0.01",
                                      "sampling.kind=power_of_choice"};
  const auto one = test::run_plan(*plan(o), 1);
  expect_identical(one, test::run_plan(*plan(o), 2));
  EXPECT_GT(one.metrics.size(), 0u);
  auto s = o;
  s.back() = "sampling.kind=curriculum";
  s.push_back("protocol.kind=scaffold");
  expect_identical(test::run_plan(*plan(s), 1), test::run_plan(*plan(s), 2));
}

TEST(AsyncParticipation, TimeoutsFreeLostClientsAndRunsStayDeterministic) {
  for (const std::string kind : {"fedbuff", "fedasync", "fedfix"}) {
    std::vector<std::string> o = {"protocol.kind=" + kind, "protocol.concurrency=6", "availability.kind=markov", "availability.mean_online_s=5",
                                        "availability.mean_offline_s=5", "availability.dropout=0.2",
                                        "protocol.deadline=2", "rounds=20"};
    if (kind == "fedbuff") o.push_back("protocol.buffer=3");
    if (kind == "fedfix") o.push_back("protocol.period_s=1");
    const auto one = test::run_plan(*plan(o), 1);
    EXPECT_EQ(static_cast<int>(rows(one, "test_accuracy").size()), 5) << kind;  // every 4th of 20 versions
    EXPECT_GT(sum(one, "lost_trips"), 0.0) << kind;  // offline or dropped clients were given up
    expect_identical(one, test::run_plan(*plan(o), 2));
  }
  // A timeout no trip reaches changes nothing but the two counters.
  const std::vector<std::string> fedbuff = {"protocol.kind=fedbuff", "protocol.buffer=4", "rounds=8"};
  auto with_timeout = fedbuff;
  with_timeout.push_back("protocol.deadline=1000");
  const auto a = test::run_plan(*plan(fedbuff)), b = test::run_plan(*plan(with_timeout));
  for (const std::string name : {"test_accuracy", "train_loss", "bytes_total", "staleness_mean"}) {
    const auto x = rows(a, name), y = rows(b, name);
    ASSERT_EQ(x.size(), y.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].time, y[i].time);
      EXPECT_EQ(x[i].value, y[i].value) << name;
    }
  }
  EXPECT_EQ(sum(b, "lost_trips"), 0.0);
}

TEST(Participation, ConfigErrors) {
  const auto expect_error = [](const std::vector<std::string>& o, const std::string& key, const std::string& part) {
    try {
      plan(o);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key_path(), key) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({"availability.kind=markov"}, "protocol.deadline", "never answer");
  expect_error({"availability.dropout=0.1"}, "protocol.deadline", "never answer");
  expect_error({"availability.kind=markov", "protocol.kind=fedbuff"}, "protocol.deadline", "never answer");
  expect_error({"availability.dropout=0.2", "protocol.kind=dpsgd", "topology.kind=ring"}, "availability.dropout",
               "not dpsgd");
  expect_error({"availability.kind=markov", "protocol.kind=fedbuff", "protocol.deadline=5", "protocol.poll_s=0"},
               "protocol.poll_s", "out of range");
  expect_error({"availability.kind=trace", "protocol.deadline=5"}, "availability.path", "is required");
  expect_error({"availability.kind=trace", "availability.path=/nonexistent.csv", "protocol.deadline=5"},
               "availability.path", "cannot open");
  expect_error({"availability.kind=sometimes"}, "availability.kind", "always");
  expect_error({"availability.dropout=1.5"}, "availability.dropout", "out of range");
  expect_error({"availability.mean_online_s=5"}, "availability.mean_online_s", "unknown key");
  expect_error({"protocol.overselect=0.5"}, "protocol.overselect", "out of range");
  expect_error({"network.noise_std=0.1", "protocol.kind=gossip", "topology.kind=ring"}, "network.noise_std",
               "afa, fedasync, fedavg, fedbuff, fedfix, scafcom, scaffold, scallion, not gossip");
  expect_error({"network.noise_std=0.1", "protocol.kind=fedamd"}, "network.noise_std", "not fedamd");
  expect_error({"availability.dropout=0.1", "protocol.kind=fedamd"}, "availability.dropout", "not fedamd");
  const auto profile_error = [&](const std::string& text, const std::string& part) {
    TempFile f("profile_bad.csv", text);
    expect_error({"profile=" + f.path}, "profile", part);
  };
  profile_error("node,speed,uplink_bps,downlink_bps\n21,1,1,1\n", "profile_bad.csv:2: node must be a node id from 0 to 20");
  profile_error("3,1,1,1\n3,2,2,2\n", "profile_bad.csv:2: node 3 appears twice");
  profile_error("3,1,0,1\n", "profile_bad.csv:1: uplink_bps must be > 0");
  profile_error("3,1,1\n", "expected 4 comma-separated fields");
  expect_error({"network.bandwidth_sigma=-1"}, "network.bandwidth_sigma", "out of range");
  expect_error({"sampling.kind=lottery"}, "sampling.kind",
               "known: available, curriculum, power_of_choice, round_robin, uniform, weighted");
}

}  // namespace
}  // namespace starling
