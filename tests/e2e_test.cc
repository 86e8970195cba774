// End to end: whole runs through the SimRuntime API and the `starling` binary; crash safety.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "config/experiment.h"
#include "db_reader.h"
#include "learning/model.h"
#include "store/results_db.h"
#include "run_util.h"
#include "test_util.h"

#ifndef STARLING_BIN
#error "STARLING_BIN (path of the starling program) must be defined by the build"
#endif

namespace starling {
namespace {

using test::ChildGuard;
using test::DbReader;
using test::MemorySink;
using test::TempDir;

// FedAvg with logistic regression on LEAF Synthetic(1, 1): 20 clients, 10 per round.
constexpr int kRounds = 30, kClients = 20, kPerRound = 10;
const std::string kSynthetic = R"yaml(
name: e2e_synthetic
seed: 7
rounds: 30
data: { dataset: synthetic, clients: 20 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32, local_epochs: 1 }
sampling: { kind: uniform, fraction: 0.5 }
eval: { every: 1 }
)yaml";

// What every evaluated FedAvg round writes.
const std::set<std::string> kRoundMetrics = {"participants", "train_loss", "test_accuracy",
                                             "test_loss",    "bytes_total", "wall_seconds"};

std::int64_t message_bytes(std::int64_t num_params) { return Message::kHeaderBytes + 4 * num_params; }

std::unique_ptr<RunPlan> plan_for(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return test::plan_from(yaml, overrides);
}

// Runs a plan through the SimRuntime API with `threads` workers, collecting rows in memory.
MemorySink run_in_memory(RunPlan& plan, int threads) { return test::run_plan(plan, threads); }

// Every metric row except wall_seconds, as comparable text with the values' exact bits.
std::vector<std::string> deterministic_rows(const MemorySink& s) {
  std::vector<std::string> out;
  for (const auto& m : s.metrics) {
    if (m.name == "wall_seconds") continue;
    std::uint64_t bits;
    std::memcpy(&bits, &m.value, sizeof bits);
    out.push_back(std::to_string(m.round) + " " + std::to_string(m.time) + " " + std::to_string(m.node) + " " + m.name +
                  " " + std::to_string(bits));
  }
  return out;
}

// ---------------------------------------------------------------- through the API

TEST(EndToEnd, MetricsAreIdenticalForOneAndTwoThreads) {
  // An MLP makes the local jobs big enough that two threads really run them concurrently.
  const std::vector<std::string> o = {"model.kind=mlp", "model.hidden=[32]", "rounds=8"};
  auto p1 = plan_for(kSynthetic, o);
  auto p2 = plan_for(kSynthetic, o);
  const MemorySink one = run_in_memory(*p1, 1);
  const MemorySink two = run_in_memory(*p2, 2);
  const auto rows1 = deterministic_rows(one), rows2 = deterministic_rows(two);
  ASSERT_EQ(rows1.size(), 8u * (kRoundMetrics.size() - 1));
  EXPECT_EQ(rows1, rows2);
  EXPECT_EQ(one.traffic_rows, two.traffic_rows);
  EXPECT_EQ(one.ended, two.ended);
  // And another seed really gives another run (the comparison above can fail).
  auto p3 = plan_for(kSynthetic, {"model.kind=mlp", "model.hidden=[32]", "rounds=8", "seed=8"});
  EXPECT_NE(deterministic_rows(run_in_memory(*p3, 2)), rows1);
}

TEST(EndToEnd, SyntheticFedAvgLearnsAndCountsBytesExactly) {
  auto plan = plan_for(kSynthetic);
  const std::int64_t params = plan->model->num_params();
  EXPECT_EQ(params, Mlp(60, {}, 10).num_params());
  const MemorySink s = run_in_memory(*plan, 2);

  EXPECT_GT(s.last("test_accuracy"), 0.6) << "chance is 0.1";
  const std::int64_t per_round = std::int64_t{kPerRound} * 2 * message_bytes(params);
  EXPECT_EQ(s.last("bytes_total"), static_cast<double>(kRounds * per_round));
  ASSERT_EQ(s.ended.size(), static_cast<std::size_t>(kRounds));
  for (int r = 1; r <= kRounds; ++r) EXPECT_EQ(s.ended[static_cast<std::size_t>(r - 1)], r);

  std::map<int, std::set<std::string>> names;
  std::map<int, double> participants, bytes, accuracy;
  for (const auto& m : s.metrics) {
    EXPECT_EQ(m.node, kNoNode);
    EXPECT_TRUE(names[m.round].insert(m.name).second) << "duplicate " << m.name << " in round " << m.round;
    if (m.name == "participants") participants[m.round] = m.value;
    if (m.name == "bytes_total") bytes[m.round] = m.value;
    if (m.name == "test_accuracy") accuracy[m.round] = m.value;
  }
  for (int r = 1; r <= kRounds; ++r) {
    EXPECT_EQ(names[r], kRoundMetrics) << "round " << r;
    EXPECT_EQ(participants[r], kPerRound);
    EXPECT_EQ(bytes[r], static_cast<double>(r * per_round)) << "bytes_total is cumulative";
  }
  EXPECT_GT(accuracy[kRounds], accuracy[1]);

  // Traffic: each round, one model down and one update up per sampled client.
  std::int64_t traffic_bytes = 0, traffic_messages = 0;
  std::map<int, int> links;
  for (const auto& t : s.traffic_rows) {
    traffic_bytes += t.bytes;
    traffic_messages += t.messages;
    ++links[t.round];
    EXPECT_EQ(t.bytes, message_bytes(params));
    EXPECT_TRUE((t.src == 0) != (t.dst == 0)) << "star: every message involves the server";
  }
  EXPECT_EQ(traffic_bytes, kRounds * per_round);
  EXPECT_EQ(traffic_messages, kRounds * kPerRound * 2);
  for (int r = 1; r <= kRounds; ++r) EXPECT_EQ(links[r], 2 * kPerRound);
}

// ---------------------------------------------------------------- through the binary

struct Binary {
  TempDir dir;
  test::ProcessResult run(const std::vector<std::string>& args) {
    std::vector<std::string> full{STARLING_BIN};
    full.insert(full.end(), args.begin(), args.end());
    return test::run_process(full, dir);
  }
};

TEST(EndToEnd, BinaryRunRecordsEverythingAndQueriesWork) {
  Binary b;
  const auto cfg = b.dir.write("syn.yaml", kSynthetic);
  const auto db = b.dir.file("out/results.db");
  const auto r = b.run({"run", cfg, "--db", db, "--threads", "2", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;

  const std::int64_t per_round = std::int64_t{kPerRound} * 2 * message_bytes(Mlp(60, {}, 10).num_params());
  {
    DbReader q(db);
    EXPECT_EQ(q.scalar("SELECT status FROM runs WHERE run_id = 1"), "finished");
    EXPECT_EQ(q.scalar("SELECT name FROM runs WHERE run_id = 1"), "e2e_synthetic");
    EXPECT_EQ(q.integer("SELECT seed FROM runs WHERE run_id = 1"), 7);
    EXPECT_EQ(q.scalar("SELECT error IS NULL FROM runs WHERE run_id = 1"), "1");
    // The stored config is the resolved one: defaults filled in.
    const YAML::Node stored = YAML::Load(q.scalar("SELECT config FROM runs WHERE run_id = 1"));
    EXPECT_EQ(stored["aggregator"]["kind"].as<std::string>(), "mean");
    EXPECT_EQ(stored["network"]["latency_ms"].as<double>(), 20.0);
    EXPECT_EQ(q.integer("SELECT MAX(round) FROM metrics"), kRounds);
    const auto bytes_total = q.doubles("SELECT value FROM metrics WHERE name = 'bytes_total' AND round = 30");
    ASSERT_EQ(bytes_total.size(), 1u);
    EXPECT_EQ(bytes_total[0], static_cast<double>(kRounds * per_round));
    EXPECT_EQ(q.integer("SELECT SUM(bytes) FROM traffic WHERE run_id = 1"), kRounds * per_round);
    EXPECT_EQ(q.integer("SELECT SUM(messages) FROM traffic WHERE run_id = 1"), kRounds * kPerRound * 2);
    EXPECT_EQ(q.integer("SELECT COUNT(*) FROM metrics WHERE name = 'participants' AND value = 10"), kRounds);
    EXPECT_EQ(q.integer("SELECT COUNT(*) FROM metrics WHERE node IS NOT NULL"), 0);
    const auto acc = q.doubles("SELECT value FROM metrics WHERE name = 'test_accuracy' ORDER BY round");
    ASSERT_EQ(acc.size(), static_cast<std::size_t>(kRounds));
    EXPECT_GT(acc.back(), 0.6);
    // Rounds traffic rows per round sum to that round's bytes_total increase.
    EXPECT_EQ(q.integer("SELECT COUNT(*) FROM (SELECT round, SUM(bytes) AS b FROM traffic GROUP BY round HAVING b = " +
                        std::to_string(per_round) + ")"),
              kRounds);
  }

  const auto runs = b.run({"runs", "--db", db});
  EXPECT_EQ(runs.exit_code, 0);
  EXPECT_NE(runs.out.find("e2e_synthetic"), std::string::npos) << runs.out;
  EXPECT_NE(runs.out.find("finished"), std::string::npos) << runs.out;

  const auto show = b.run({"show", "1", "--db", db});
  EXPECT_EQ(show.exit_code, 0);
  EXPECT_NE(show.out.find("test_accuracy"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("bytes_total"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find(std::to_string(kRounds * per_round)), std::string::npos) << show.out;

  const auto csv = b.run({"export", "1", "--db", db, "--format", "csv"});
  EXPECT_EQ(csv.exit_code, 0);
  EXPECT_EQ(csv.out.rfind("round,sim_time,node,name,value\n", 0), 0u) << csv.out.substr(0, 200);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 1 + kRounds * static_cast<long>(kRoundMetrics.size()));
  const auto to_file = b.run({"export", "1", "--db", db, "--output", b.dir.file("m.csv")});
  EXPECT_EQ(to_file.exit_code, 0);
  EXPECT_EQ(test::read_text(b.dir.file("m.csv")), csv.out);

  EXPECT_EQ(b.run({"show", "2", "--db", db}).exit_code, 2);
  EXPECT_EQ(b.run({"export", "1", "--db", db, "--format", "xml"}).exit_code, 2);
}

// Metric rows of run 1 (all but wall_seconds) with the exact bits of sim_time and value.
std::vector<std::string> db_rows(const std::string& path) {
  DbReader q(path);
  const std::string where = " FROM metrics WHERE run_id = 1 AND name != 'wall_seconds' ORDER BY rowid";
  const auto keys = q.rows("SELECT round, COALESCE(node, -1), name" + where);
  const auto times = q.doubles("SELECT sim_time" + where), values = q.doubles("SELECT value" + where);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::uint64_t t, v;
    std::memcpy(&t, &times[i], sizeof t);
    std::memcpy(&v, &values[i], sizeof v);
    out.push_back(keys[i][0] + " " + keys[i][1] + " " + keys[i][2] + " " + std::to_string(t) + " " + std::to_string(v));
  }
  return out;
}

TEST(EndToEnd, BinaryResultsDoNotDependOnThreadCount) {
  Binary b;
  const auto cfg = b.dir.write("syn.yaml", kSynthetic);
  const std::vector<std::string> o = {"--set", "model.kind=mlp", "--set", "model.hidden=[16]", "--set", "rounds=10"};
  auto args1 = std::vector<std::string>{"run", cfg, "--db", b.dir.file("t1.db"), "--threads", "1", "--quiet"};
  auto args2 = std::vector<std::string>{"run", cfg, "--db", b.dir.file("t2.db"), "--threads", "2", "--quiet"};
  args1.insert(args1.end(), o.begin(), o.end());
  args2.insert(args2.end(), o.begin(), o.end());
  ASSERT_EQ(b.run(args1).exit_code, 0);
  ASSERT_EQ(b.run(args2).exit_code, 0);
  const auto rows1 = db_rows(b.dir.file("t1.db"));
  EXPECT_EQ(rows1.size(), 10u * 5);
  EXPECT_EQ(rows1, db_rows(b.dir.file("t2.db")));
  DbReader q1(b.dir.file("t1.db")), q2(b.dir.file("t2.db"));
  const std::string traffic = "SELECT round, src, dst, bytes, messages FROM traffic ORDER BY rowid";
  EXPECT_EQ(q1.rows(traffic), q2.rows(traffic));
}

TEST(EndToEnd, FashionMnistSmallRun) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << dir << " is not installed";
  auto plan = plan_for(R"yaml(
seed: 1
rounds: 3
data: { dataset: fashion_mnist, clients: 10, partition: { kind: iid } }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32 }
sampling: { fraction: 0.3 }
)yaml");
  EXPECT_EQ(plan->data->train.size(), 60000);
  EXPECT_EQ(plan->data->test.size(), 10000);
  const MemorySink s = run_in_memory(*plan, 2);
  EXPECT_GT(s.last("test_accuracy"), 0.65) << "chance is 0.1";
  EXPECT_EQ(s.last("bytes_total"), 3.0 * 3 * 2 * message_bytes(7850));
}

// ---------------------------------------------------------------- crash safety

// Committed rounds of run 1, or -1 while the database is not there yet.
long long committed_rounds(const std::string& db) {
  if (!std::filesystem::exists(db)) return -1;
  try {
    DbReader q(db);
    return q.integer("SELECT COUNT(DISTINCT round) FROM metrics WHERE run_id = 1");
  } catch (const std::exception&) {
    return -1;  // the schema is being created
  }
}

// Starts a run that would take ~100000 rounds and waits until `rounds` are committed.
pid_t start_long_run(const TempDir& dir, const std::string& db, long long rounds, long long& seen) {
  const auto cfg = dir.write("long.yaml", kSynthetic);
  const pid_t pid = test::spawn({STARLING_BIN, "run", cfg, "--db", db, "--quiet", "--set", "rounds=100000"},
                                dir.file("long.out"), dir.file("long.err"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  seen = -1;
  while ((seen = committed_rounds(db)) < rounds) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "the run ended early: " << test::read_text(dir.file("long.err"));
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "no " << rounds << " rounds committed within 60 s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pid;
}

// Every committed round is whole: the full metric set and every message's traffic row.
void expect_complete_rounds(DbReader& q, long long at_least) {
  EXPECT_EQ(q.scalar("PRAGMA integrity_check"), "ok");
  const long long rounds = q.integer("SELECT COUNT(DISTINCT round) FROM metrics WHERE run_id = 1");
  EXPECT_GE(rounds, at_least);
  EXPECT_EQ(q.integer("SELECT COALESCE(MAX(round), 0) FROM metrics WHERE run_id = 1"), rounds) << "rounds 1..n, no gaps";
  const auto per_round = q.rows(
      "SELECT round, COUNT(*), COUNT(DISTINCT name) FROM metrics WHERE run_id = 1 GROUP BY round ORDER BY round");
  ASSERT_EQ(static_cast<long long>(per_round.size()), rounds);
  for (const auto& row : per_round) {
    EXPECT_EQ(row[1], std::to_string(kRoundMetrics.size())) << "round " << row[0];
    EXPECT_EQ(row[2], std::to_string(kRoundMetrics.size())) << "round " << row[0];
  }
  for (const auto& name : kRoundMetrics)
    EXPECT_EQ(q.integer("SELECT COUNT(*) FROM metrics WHERE run_id = 1 AND name = '" + name + "'"), rounds) << name;
  const auto traffic = q.rows(
      "SELECT round, COUNT(*), SUM(messages) FROM traffic WHERE run_id = 1 GROUP BY round ORDER BY round");
  ASSERT_EQ(static_cast<long long>(traffic.size()), rounds);
  for (const auto& row : traffic) {
    EXPECT_EQ(row[1], std::to_string(2 * kPerRound)) << "round " << row[0];
    EXPECT_EQ(row[2], std::to_string(2 * kPerRound)) << "round " << row[0];
  }
}

TEST(CrashSafety, SigkillLeavesEveryCommittedRoundIntact) {
  // Several kills at different moments, so that some land while a round is being written.
  const std::vector<std::pair<long long, int>> kills = {{3, 0},    {5, 300},  {8, 700},   {12, 1100},
                                                        {20, 1600}, {30, 2200}, {40, 2900}, {60, 3700}};
  for (const auto& [threshold, delay_us] : kills) {
    SCOPED_TRACE("killed " + std::to_string(delay_us) + " us after >= " + std::to_string(threshold) + " rounds");
    TempDir dir;
    const auto db = dir.file("kill.db");
    long long seen = 0;
    const pid_t pid = start_long_run(dir, db, threshold, seen);
    ASSERT_GT(pid, 0);
    ChildGuard guard(pid);
    ASSERT_GE(seen, threshold);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    guard.release();
    const auto r = test::wait_for(pid, dir.file("long.out"), dir.file("long.err"));
    ASSERT_EQ(r.term_signal, SIGKILL) << "the run was not killed mid-way (exit " << r.exit_code << ")";
    {
      DbReader q(db, SQLITE_OPEN_READWRITE);  // as the next `starling` would open it
      expect_complete_rounds(q, seen);
      EXPECT_EQ(q.scalar("SELECT status FROM runs WHERE run_id = 1"), "running");
    }
    // The database stays usable: the next run appends to it.
    ResultsDb again(db);
    EXPECT_EQ(again.begin_run("after", "{}", 1, "v"), 2);
    EXPECT_EQ(again.runs().size(), 2u);
  }
}

TEST(CrashSafety, SigtermInterruptsCleanlyWithExit130) {
  TempDir dir;
  const auto db = dir.file("term.db");
  long long seen = 0;
  const pid_t pid = start_long_run(dir, db, 3, seen);
  ASSERT_GT(pid, 0);
  ChildGuard guard(pid);
  ASSERT_GE(seen, 3);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  guard.release();
  const auto r = test::wait_for(pid, dir.file("long.out"), dir.file("long.err"));
  EXPECT_EQ(r.term_signal, 0) << "killed by the signal instead of handling it";
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("interrupted"), std::string::npos) << "stderr: " << r.err << "\nstdout: " << r.out;
  DbReader q(db);
  EXPECT_EQ(q.scalar("SELECT status FROM runs WHERE run_id = 1"), "interrupted");
  EXPECT_NE(q.scalar("SELECT error FROM runs WHERE run_id = 1").find("signal"), std::string::npos);
  EXPECT_NE(q.scalar("SELECT finished_at FROM runs WHERE run_id = 1"), "NULL");
  expect_complete_rounds(q, seen);
}

}  // namespace
}  // namespace starling
