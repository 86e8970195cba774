// The asynchronous servers (FedBuff, FedAsync, FedFix, AFA) end to end through the SimRuntime
// API: reduction to FedAvg, staleness, tick times, mixing weight, buffers, determinism, config.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "config/experiment.h"
#include "nodes/async_server.h"
#include "run_util.h"
#include "test_util.h"

namespace starling {
namespace {

using test::MemorySink;

const std::string kConfig = R"yaml(
seed: 5
rounds: 8
data: { dataset: synthetic, clients: 8, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16 }
protocol: { kind: fedbuff }
eval: { every: 1 }
)yaml";
constexpr int kClients = 8;
const std::vector<std::string> kLognormal = {"compute.kind=lognormal", "compute.sigma=1.0"};

std::unique_ptr<RunPlan> plan(const std::vector<std::string>& overrides) { return test::plan_from(kConfig, overrides); }

MemorySink run(RunPlan& p, int threads = 1) { return test::run_plan(p, threads); }
MemorySink run(const std::vector<std::string>& overrides, int threads = 1) { return run(*plan(overrides), threads); }

std::vector<MemorySink::Metric> rows(const MemorySink& s, const std::string& name) {
  std::vector<MemorySink::Metric> out;
  for (const auto& m : s.metrics)
    if (m.name == name) out.push_back(m);
  return out;
}

void expect_same_rows(const MemorySink& one, const MemorySink& two, const std::string& name) {
  const auto a = rows(one, name), b = rows(two, name);
  ASSERT_EQ(a.size(), b.size()) << name;
  ASSERT_FALSE(a.empty()) << name;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].round, b[i].round) << name;
    EXPECT_EQ(a[i].time, b[i].time) << name << " round " << a[i].round;
    EXPECT_EQ(std::memcmp(&a[i].value, &b[i].value, sizeof(double)), 0)
        << name << " round " << a[i].round << ": " << a[i].value << " vs " << b[i].value;
  }
}

TEST(AsyncFedBuff, AllClientsBufferedAtEqualSpeedIsFedAvg) {
  // K = C = n, fixed speed, equal partitions and steps: every trip starts and ends together, the
  // buffer is the unweighted mean of fresh updates (= FedAvg's sample-weighted mean with equal
  // weights), and the refill waits for the whole instant, so each version goes to everyone.
  auto equalize = [](RunPlan& p) {
    std::size_t n = SIZE_MAX;
    for (const auto& part : p.task->partition) n = std::min(n, part.size());
    for (auto& part : p.task->partition) part.resize(n);
  };
  auto fedavg = plan({"protocol.kind=fedavg", "sampling.fraction=1.0"});
  auto fedbuff = plan({"protocol.concurrency=8", "protocol.buffer=8"});
  equalize(*fedavg);
  equalize(*fedbuff);
  const MemorySink a = run(*fedavg), b = run(*fedbuff);
  for (const auto* name : {"participants", "train_loss", "test_accuracy", "test_loss", "bytes_total"})
    expect_same_rows(a, b, name);
  EXPECT_EQ(a.traffic_rows, b.traffic_rows);
  for (const auto& r : rows(b, "staleness_mean")) EXPECT_EQ(r.value, 0.0);
  EXPECT_EQ(rows(b, "staleness_mean").size(), 8u);
}

TEST(AsyncFedBuff, HeterogeneousSpeedsMakeUpdatesStale) {
  auto o = kLognormal;
  o.insert(o.end(), {"protocol.concurrency=6", "protocol.buffer=2", "rounds=20"});
  const MemorySink s = run(o);
  const auto st = rows(s, "staleness_mean");
  ASSERT_EQ(st.size(), 20u);
  double most = 0.0;
  for (const auto& r : st) {
    EXPECT_GE(r.value, 0.0);
    const double sum = r.value * 2;  // a mean of K = 2 integer staleness values
    EXPECT_NEAR(sum, std::round(sum), 1e-12) << r.value;
    most = std::max(most, r.value);
  }
  EXPECT_GT(most, 0.0);
  for (const auto& r : rows(s, "participants")) EXPECT_EQ(r.value, 2.0);
  EXPECT_GT(s.last("test_accuracy"), 0.2);
}

TEST(AsyncFedBuff, StalenessWeights) {
  const Staleness none{Staleness::Kind::kNone}, sqrt{Staleness::Kind::kSqrt}, poly{Staleness::Kind::kPoly, 2.0};
  EXPECT_EQ(none.weight(7), 1.0);
  EXPECT_EQ(sqrt.weight(0), 1.0);
  EXPECT_DOUBLE_EQ(sqrt.weight(3), 0.5);
  EXPECT_DOUBLE_EQ(poly.weight(1), 0.25);
}

TEST(AsyncFedFix, UpdatesHappenOnlyOnTicks) {
  auto o = kLognormal;
  o.insert(o.end(), {"protocol.kind=fedfix", "protocol.period_s=0.05", "protocol.concurrency=8", "rounds=12"});
  const MemorySink s = run(o);
  const SimTime period = from_seconds(0.05);
  ASSERT_EQ(s.ended.size(), 12u);
  std::set<SimTime> times;
  for (const auto& m : s.metrics) {
    EXPECT_EQ(m.time % period, 0) << m.name << " at " << m.time;
    EXPECT_GT(m.time, 0);
    times.insert(m.time);
  }
  EXPECT_EQ(times.size(), 12u);  // one update per (non-empty) tick
  double arrivals = 0.0;
  for (const auto& r : rows(s, "participants")) {
    EXPECT_GE(r.value, 1.0);
    arrivals += r.value;
  }
  EXPECT_GT(arrivals, 12.0) << "some tick should gather several clients";
}

TEST(AsyncFedAsync, SingleArrivalMixesWithAlpha) {
  // One client, one trip: x1 = (1 - a) x0 + a (x0 + delta) = x0 + a delta with a = alpha s(0) =
  // alpha, which is FedAvg on that client with server learning rate alpha.
  const std::vector<std::string> one = {"data.clients=1", "rounds=1"};
  auto o = one;
  o.insert(o.end(), {"protocol.kind=fedasync", "protocol.alpha=0.3", "protocol.concurrency=1"});
  const MemorySink async = run(o);
  o = one;
  o.insert(o.end(), {"protocol.kind=fedavg", "sampling.fraction=1.0", "server_optimizer.lr=0.3"});
  const MemorySink sync = run(o);
  EXPECT_EQ(rows(async, "staleness_mean").at(0).value, 0.0);
  EXPECT_NEAR(async.last("test_loss"), sync.last("test_loss"), 1e-5);
  EXPECT_EQ(async.last("test_accuracy"), sync.last("test_accuracy"));
  EXPECT_EQ(async.last("train_loss"), sync.last("train_loss"));
  // alpha = 1 with an unweighted staleness replaces the model: equal to FedAvg with lr 1.
  o = one;
  o.insert(o.end(), {"protocol.kind=fedasync", "protocol.alpha=1", "protocol.staleness=none", "protocol.concurrency=1"});
  const MemorySink replace = run(o);
  EXPECT_NE(replace.last("test_loss"), async.last("test_loss"));
}

TEST(AsyncFedAsync, EveryArrivalIsAVersion) {
  auto o = kLognormal;
  o.insert(o.end(), {"protocol.kind=fedasync", "protocol.concurrency=8", "rounds=16"});
  const MemorySink s = run(o);
  for (const auto& r : rows(s, "participants")) EXPECT_EQ(r.value, 1.0);
  double most = 0.0;
  for (const auto& r : rows(s, "staleness_mean")) {
    EXPECT_EQ(r.value, std::round(r.value));
    most = std::max(most, r.value);
  }
  EXPECT_GT(most, 0.0);
}

TEST(AsyncAfa, CdUsesTheFirstMArrivalsAndCsAllLatest) {
  auto o = kLognormal;
  o.insert(o.end(), {"protocol.kind=afa", "protocol.buffer=3", "protocol.concurrency=5", "rounds=15",
                     "protocol.min_steps=1", "protocol.max_steps=6"});
  const MemorySink cd = run(o);
  for (const auto& r : rows(cd, "participants")) EXPECT_EQ(r.value, 3.0);
  EXPECT_TRUE(rows(cd, "contributions").empty());
  o.push_back("protocol.variant=cs");
  const MemorySink cs = run(o);
  for (const auto& r : rows(cs, "participants")) EXPECT_EQ(r.value, 3.0);
  // The CS step sums the latest update of every client heard from so far: a count that never
  // drops and reaches all n once each has reported.
  const auto used = rows(cs, "contributions");
  ASSERT_EQ(used.size(), 15u);
  EXPECT_GE(used.front().value, 1.0);  // a fast client may arrive twice among the first M
  EXPECT_LE(used.front().value, 3.0);
  for (std::size_t i = 1; i < used.size(); ++i) {
    EXPECT_GE(used[i].value, used[i - 1].value);
    EXPECT_LE(used[i].value, used[i - 1].value + 3.0);
  }
  EXPECT_EQ(used.back().value, kClients);
  EXPECT_NE(cs.last("test_loss"), cd.last("test_loss"));
}

TEST(Async, SameMetricsForAnyThreadCount) {
  for (const std::string kind : {"fedbuff", "fedasync", "fedfix", "afa"}) {
    auto o = kLognormal;
    o.insert(o.end(), {"protocol.kind=" + kind, "protocol.concurrency=6", "rounds=10"});
    if (kind == "fedbuff" || kind == "afa") o.push_back("protocol.buffer=3");
    if (kind == "fedfix") o.push_back("protocol.period_s=0.05");
    const MemorySink one = run(o, 1), two = run(o, 2);
    ASSERT_EQ(one.metrics.size(), two.metrics.size()) << kind;
    for (std::size_t i = 0; i < one.metrics.size(); ++i) {
      if (one.metrics[i].name == "wall_seconds") continue;
      EXPECT_EQ(one.metrics[i].name, two.metrics[i].name) << kind;
      EXPECT_EQ(one.metrics[i].time, two.metrics[i].time) << kind;
      EXPECT_EQ(std::memcmp(&one.metrics[i].value, &two.metrics[i].value, sizeof(double)), 0)
          << kind << " " << one.metrics[i].name;
    }
    EXPECT_EQ(one.traffic_rows, two.traffic_rows) << kind;
  }
}

void expect_config_error(const std::vector<std::string>& overrides, const std::string& key) {
  test::expect_config_error(kConfig, overrides, key);
}

TEST(Async, ConfigErrorsNameTheKey) {
  expect_config_error({"protocol.buffer=0"}, "protocol.buffer");
  expect_config_error({"protocol.concurrency=9"}, "protocol.concurrency");  // 8 clients
  expect_config_error({"protocol.staleness=linear"}, "protocol.staleness");
  expect_config_error({"protocol.kind=fedasync", "protocol.alpha=0"}, "protocol.alpha");
  expect_config_error({"protocol.kind=fedfix", "protocol.period_s=0"}, "protocol.period_s");
  expect_config_error({"protocol.kind=afa", "protocol.min_steps=5", "protocol.max_steps=2"}, "protocol.max_steps");
  expect_config_error({"protocol.kind=afa", "protocol.variant=cx"}, "protocol.variant");
  expect_config_error({"protocol.kind=fedasync", "protocol.buffer=4"}, "protocol.buffer");  // not a fedasync key
  expect_config_error({"topology.kind=ring"}, "topology.kind");
  EXPECT_NO_THROW(plan({"protocol.staleness=poly", "protocol.staleness_exponent=1.5"}));
}

}  // namespace
}  // namespace starling
