// The gRPC deployment: real coordinator and node processes on 127.0.0.1 (ephemeral ports) against
// the simulator, crashed node processes, and input the coordinator must refuse.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <map>
#include <tuple>
#include <thread>

#include "db_reader.h"
#include "deploy/wire.h"
#include "proto/starling.grpc.pb.h"
#include "run_util.h"
#include "test_util.h"

#ifndef STARLING_BIN
#error "STARLING_BIN (path of the starling program) must be defined by the build"
#endif

namespace starling {
namespace {

using test::ChildGuard;
using test::DbReader;
using test::TempDir;

// FedAvg with logistic regression on LEAF Synthetic: 16 clients, half of them each round.
const std::string kConfig = R"yaml(
name: deploy_synthetic
seed: 11
rounds: 6
data: { dataset: synthetic, clients: 16 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 16, local_epochs: 1 }
sampling: { kind: uniform, fraction: 0.5 }
eval: { every: 1 }
)yaml";

const char* kToken = "deploy-test-token";

// round -> name -> value of every global metric a simulator writes too (not wall-clock ones).
using Metrics = std::map<int, std::map<std::string, double>>;
bool compared(const std::string& name) {
  return name != "wall_seconds" && name != "grpc_bytes_total" && name != "grpc_probe_bytes_total";
}

Metrics simulated(const std::vector<std::string>& overrides) {
  auto plan = test::plan_from(kConfig, overrides);
  const auto sink = test::run_plan(*plan);
  Metrics out;
  for (const auto& m : sink.metrics)
    if (m.node == kNoNode && compared(m.name)) out[m.round][m.name] = m.value;
  return out;
}

Metrics deployed(const std::string& db) {
  DbReader r(db);
  const std::string sql = "SELECT round, name, value FROM metrics WHERE node IS NULL ORDER BY rowid";
  const auto rows = r.rows(sql);
  const auto values = r.doubles(sql, 2);  // bit-exact (the text form rounds)
  Metrics out;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (compared(rows[i][1])) out[std::stoi(rows[i][0])][rows[i][1]] = values[i];
  return out;
}

std::string run_status(const std::string& db) { return DbReader(db).scalar("SELECT status || ': ' || IFNULL(error, '') FROM runs"); }

struct Coordinator {
  pid_t pid = -1;
  std::string port;
  std::string out, err;
};

// Starts `starling coordinator` on 127.0.0.1:0 and waits until it listens.
Coordinator start_coordinator(const TempDir& dir, const std::string& db, int procs, const std::vector<std::string>& sets) {
  setenv("STARLING_TOKEN", kToken, 1);
  const auto config = dir.write("config.yaml", kConfig);
  const auto port_file = dir.file("port");
  std::vector<std::string> args = {STARLING_BIN, "coordinator", config, "--listen", "127.0.0.1:0", "--procs",
                                   std::to_string(procs), "--port-file", port_file, "--db", db, "--quiet"};
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  Coordinator c;
  c.out = dir.file("coordinator.out");
  c.err = dir.file("coordinator.err");
  c.pid = test::spawn(args, c.out, c.err);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (c.port.empty() && std::chrono::steady_clock::now() < until) {
    std::ifstream(port_file) >> c.port;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return c;
}

pid_t start_node(const TempDir& dir, const std::string& port, const std::vector<std::string>& extra = {}) {
  static int n = 0;
  std::vector<std::string> args = {STARLING_BIN, "node", "--coordinator", "127.0.0.1:" + port, "--connect-timeout", "30"};
  args.insert(args.end(), extra.begin(), extra.end());
  const std::string tag = std::to_string(n++);
  return test::spawn(args, dir.file("node" + tag + ".out"), dir.file("node" + tag + ".err"));
}

// `starling launch` of kConfig with `overrides` and `procs` node processes, into dir's results.db.
test::ProcessResult launch(const TempDir& dir, int procs, const std::vector<std::string>& overrides) {
  const auto config = dir.write("config.yaml", kConfig);
  std::vector<std::string> args = {STARLING_BIN, "launch", config, "--procs", std::to_string(procs),
                                   "--db", dir.file("results.db"), "--quiet"};
  for (const auto& o : overrides) args.insert(args.end(), {"--set", o});
  return test::run_process(args, dir);
}

TEST(Deploy, TlsTakesBothCertificateAndKey) {
  try {
    test::plan_from(kConfig, {"deploy.tls_cert=cert.pem"});
    FAIL() << "a certificate without a key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "deploy.tls_key");
  }
}

TEST(Deploy, SimulatorOnlyFeaturesAreRefusedNamingTheKey) {
  TempDir dir;
  const auto config = dir.write("config.yaml", kConfig);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"protocol.kind=modest", "protocol.join.fraction"},
      {"protocol.kind=pfedgate", "protocol.kind"},
      {"availability.dropout=0.2", "availability.dropout"}};
  for (const auto& [setting, key] : cases) {
    std::vector<std::string> args = {STARLING_BIN, "coordinator", config, "--listen", "127.0.0.1:0", "--token", "t",
                                     "--set", setting};
    if (setting.starts_with("protocol.kind=modest"))
      args.insert(args.end(), {"--set", "protocol.join.fraction=0.2"});
    if (setting.starts_with("availability")) args.insert(args.end(), {"--set", "protocol.deadline=5"});
    const auto r = test::run_process(args, dir);
    EXPECT_NE(r.exit_code, 0) << setting;
    EXPECT_NE(r.err.find(key + ":"), std::string::npos) << setting << ": " << r.err;
  }
}

TEST(Deploy, LaunchWithEightNodeProcessesEqualsTheSimulation) {
  TempDir dir;
  const auto config = dir.write("config.yaml", kConfig);
  const auto db = dir.file("results.db");
  // Two compute threads per process: results do not depend on it, as in the simulator.
  const auto r = test::run_process(
      {STARLING_BIN, "launch", config, "--procs", "8", "--threads", "2", "--db", db, "--quiet"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_status(db), "finished: ");
  const Metrics sim = simulated({}), dep = deployed(db);
  ASSERT_EQ(dep.size(), 6u);
  EXPECT_EQ(dep, sim);  // every value bit for bit: same streams, same aggregation order
  // The same payload bytes per link, and the measured gRPC frames besides.
  DbReader reader(db);
  auto plan = test::plan_from(kConfig);
  const auto sink = test::run_plan(*plan);
  std::int64_t sim_bytes = 0;
  for (const auto& t : sink.traffic_rows) sim_bytes += t.bytes;
  EXPECT_EQ(reader.scalar("SELECT SUM(bytes) FROM traffic"), std::to_string(sim_bytes));
  EXPECT_EQ(reader.scalar("SELECT COUNT(*) FROM traffic"), std::to_string(sink.traffic_rows.size()));
  const double grpc = std::stod(reader.scalar("SELECT value FROM metrics WHERE name = 'grpc_bytes_total' AND round = 6"));
  EXPECT_GT(grpc, 0.5 * static_cast<double>(sim_bytes));
  EXPECT_NE(grpc, static_cast<double>(sim_bytes));
}

TEST(Deploy, ScaffoldFamilyAndFedamdDeployedEqualTheSimulation) {
  const std::vector<std::vector<std::string>> variants = {
      {"protocol.kind=scaffold"},
      {"protocol.kind=scallion", "compressor.kind=randk", "compressor.ratio=0.2"},
      {"protocol.kind=scafcom", "compressor.kind=topk", "compressor.ratio=0.2"},
      {"protocol.kind=fedamd"}};
  for (const auto& overrides : variants) {
    TempDir dir;
    const auto db = dir.file("results.db");
    const auto r = launch(dir, 3, overrides);
    ASSERT_EQ(r.exit_code, 0) << overrides.front() << ": " << r.err;
    EXPECT_EQ(deployed(db), simulated(overrides)) << overrides.front();
  }
}

// Decentralized protocols: every node is in a node process; their round observer's reports are
// relayed to the coordinator, which sums them in node order as the simulator does.
const std::vector<std::string> kDecentralized = {"protocol.kind=dpsgd", "topology.kind=ring"};

TEST(Deploy, DecentralizedDeployedEqualTheSimulation) {
  const std::vector<std::vector<std::string>> variants = {
      {},                                                                             // D-PSGD on a ring
      {"protocol.gossip_steps=2", "topology.kind=torus"},                             // two gossip steps
      {"compressor.kind=topk", "compressor.ratio=0.1", "protocol.consensus_lr=0.5"},  // CHOCO-SGD
      {"topology.kind=complete", "protocol.aggregation=robust", "aggregator.kind=median", "attack.kind=sign_flip",
       "attack.fraction=0.2"},                                                        // Byzantine nodes, median
      {"protocol.kind=zo_shared", "topology.kind=complete"}};                         // one byte per node and step
  for (const auto& variant : variants) {
    std::vector<std::string> overrides = kDecentralized;
    overrides.insert(overrides.end(), variant.begin(), variant.end());
    const std::string label = variant.empty() ? "dpsgd" : variant.front();
    TempDir dir;
    const auto db = dir.file("results.db");
    const auto r = launch(dir, 3, overrides);
    ASSERT_EQ(r.exit_code, 0) << label << ": " << r.err;
    Metrics dep = deployed(db), sim = simulated(overrides);
    ASSERT_EQ(dep.size(), 6u) << label;
    // Nodes run ahead into the next round, so how many bytes were out when a round ended
    // depends on the clock; the run's total is the same, and so is each round's traffic.
    for (int round = 1; round < 6; ++round) dep[round].erase("bytes_total"), sim[round].erase("bytes_total");
    EXPECT_EQ(dep, sim) << label;
    auto plan = test::plan_from(kConfig, overrides);
    std::map<std::tuple<int, NodeId, NodeId>, std::pair<std::int64_t, std::int64_t>> sim_traffic, dep_traffic;
    for (const auto& t : test::run_plan(*plan).traffic_rows)
      sim_traffic[{t.round, t.src, t.dst}] = {t.bytes, t.messages};
    for (const auto& row : DbReader(db).rows("SELECT round, src, dst, bytes, messages FROM traffic"))
      dep_traffic[{std::stoi(row[0]), std::stoi(row[1]), std::stoi(row[2])}] = {std::stoll(row[3]), std::stoll(row[4])};
    EXPECT_EQ(dep_traffic, sim_traffic) << label;
    // The observations travelled too, outside the protocol's bytes.
    EXPECT_GT(std::stod(DbReader(db).scalar("SELECT value FROM metrics WHERE name = 'grpc_probe_bytes_total' AND round = 6")),
              0.0) << label;
  }
}

// Asynchronous decentralized protocols run on real time: no parity, but every round is recorded.
TEST(Deploy, GossipAndModestRunDeployed) {
  const std::vector<std::vector<std::string>> variants = {
      {"protocol.kind=gossip", "protocol.wake_rate=40"},  // rounds of 25 ms
      {"protocol.kind=modest", "protocol.sample=4", "protocol.local_steps=2"}};
  for (const auto& variant : variants) {
    std::vector<std::string> overrides = kDecentralized;
    overrides.insert(overrides.end(), variant.begin(), variant.end());
    TempDir dir;
    const auto db = dir.file("results.db");
    const auto r = launch(dir, 4, overrides);
    ASSERT_EQ(r.exit_code, 0) << variant.front() << ": " << r.err;
    EXPECT_EQ(run_status(db), "finished: ");
    const Metrics dep = deployed(db);
    ASSERT_EQ(dep.size(), 6u) << variant.front();
    for (const auto& [round, metrics] : dep) EXPECT_EQ(metrics.count("test_accuracy"), 1u) << variant.front() << " " << round;
  }
}

TEST(Deploy, ObservationsAreCheckedOnTheWire) {
  const MessageLimits limits{4, 7, 12, 6, 1000};
  wire::Observation o;
  const Vector model = Vector::LinSpaced(10, -1.0f, 1.0f);
  to_proto(Observation{3, 5, model, {0.25, 2.0}}, o);
  EXPECT_EQ(check_observation(o, limits), std::nullopt);
  const Observation back = from_proto(o);
  EXPECT_EQ(back.round, 3);
  EXPECT_EQ(back.node, 5);
  ASSERT_EQ(back.model.size(), model.size());
  EXPECT_TRUE((back.model.array() == model.array()).all());
  EXPECT_EQ(back.values, (std::vector<double>{0.25, 2.0}));
  const auto says = [&](wire::Observation bad, const std::string& words) {
    const auto why = check_observation(bad, limits);
    ASSERT_TRUE(why.has_value()) << words;
    EXPECT_NE(why->find(words), std::string::npos) << *why;
  };
  wire::Observation bad = o;
  bad.set_node(8);
  says(bad, "does not host");
  bad = o;
  bad.set_round(7);
  says(bad, "not in the run");
  bad = o;
  bad.set_model(std::string(7, 'x'));
  says(bad, "whole number of float32");
  bad = o;
  bad.set_model(std::string(1004, 'x'));
  says(bad, "deploy.max_message_mb");
  bad = o;
  for (int i = 0; i < 20; ++i) bad.add_values(1.0);
  says(bad, "at most 16");
}

TEST(Deploy, KilledNodeProcessIsDroppedAfterTheRoundDeadline) {
  TempDir dir;
  const auto db = dir.file("results.db");
  // Real rounds here take milliseconds: the deadline only matters for the crashed process.
  auto c = start_coordinator(dir, db, 3, {"protocol.deadline=1"});
  ChildGuard coordinator(c.pid);
  ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
  std::vector<pid_t> nodes = {start_node(dir, c.port), start_node(dir, c.port, {"--crash-at-round", "3"}),
                              start_node(dir, c.port)};
  const auto r = test::wait_for(c.pid, c.out, c.err);
  coordinator.release();
  for (pid_t p : nodes) ChildGuard{p};
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_status(db), "finished: ");
  EXPECT_NE(r.err.find("was dropped"), std::string::npos) << r.err;
  const Metrics sim = simulated({}), dep = deployed(db);
  ASSERT_EQ(dep.size(), 6u);  // every round was recorded
  // With a deadline the server also records selected/contacted/late_updates: compare FedAvg's own.
  const auto without_participation_metrics = [](std::map<std::string, double> m) {
    for (const char* key : {"selected", "contacted", "late_updates"}) m.erase(key);
    return m;
  };
  EXPECT_EQ(without_participation_metrics(dep.at(1)), sim.at(1));
  EXPECT_EQ(without_participation_metrics(dep.at(2)), sim.at(2));
  EXPECT_EQ(dep.at(2).at("late_updates"), 0.0);
  // From round 3 the crashed process's clients are missing: fewer contributions than sampled.
  EXPECT_LT(dep.at(3).at("participants"), sim.at(3).at("participants"));
  double missing = 0;
  for (int round = 3; round <= 6; ++round) missing += sim.at(round).at("participants") - dep.at(round).at("participants");
  EXPECT_GT(missing, 0);
}

TEST(Deploy, KilledNodeProcessWithoutDeadlineFailsTheRunClearly) {
  struct Case {
    std::vector<std::string> sets;
    std::string says;
  };
  const std::vector<Case> cases = {{{}, "protocol.deadline"},  // FedAvg: the server would wait forever
                                   {kDecentralized, "decentralized runs need every node"}};
  for (const auto& [sets, says] : cases) {
    TempDir dir;
    const auto db = dir.file("results.db");
    auto c = start_coordinator(dir, db, 2, sets);
    ChildGuard coordinator(c.pid);
    ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
    std::vector<pid_t> nodes = {start_node(dir, c.port), start_node(dir, c.port, {"--crash-at-round", "2"})};
    const auto r = test::wait_for(c.pid, c.out, c.err);
    coordinator.release();
    for (pid_t p : nodes) ChildGuard{p};
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const auto status = run_status(db);
    EXPECT_EQ(status.rfind("failed: ", 0), 0u) << status;
    EXPECT_NE(status.find(says), std::string::npos) << status;
    if (sets.empty()) {
      EXPECT_EQ(DbReader(db).scalar("SELECT MAX(round) FROM metrics"), "1");  // round 1 was committed
    }
  }
}

TEST(Deploy, SigtermEndsTheRunAsInterrupted) {
  TempDir dir;
  const auto db = dir.file("results.db");
  auto c = start_coordinator(dir, db, 2, {"rounds=1000000"});
  ChildGuard coordinator(c.pid);
  ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
  const pid_t a = start_node(dir, c.port), b = start_node(dir, c.port);
  ChildGuard ga(a), gb(b);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {  // some rounds committed
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!std::filesystem::exists(db)) continue;
    const auto rounds = DbReader(db).scalar("SELECT COUNT(DISTINCT round) FROM metrics");
    if (!rounds.empty() && std::stoi(rounds) >= 3) break;
  }
  kill(c.pid, SIGTERM);
  const auto r = test::wait_for(c.pid, c.out, c.err);
  coordinator.release();
  EXPECT_EQ(r.exit_code, 130) << r.err;
  const auto status = run_status(db);
  EXPECT_EQ(status.rfind("interrupted: ", 0), 0u) << status;
  EXPECT_GE(std::stoi(DbReader(db).scalar("SELECT COUNT(DISTINCT round) FROM metrics")), 3);
  for (pid_t p : {a, b}) {  // the node processes were told and ended on their own
    int st = 0;
    ASSERT_EQ(waitpid(p, &st, 0), p);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 130) << st;
  }
  ga.release();
  gb.release();
}

TEST(Deploy, TlsCoordinatorServesTlsNodesAndRefusesPlaintext) {
  TempDir dir;
  const auto cert = dir.file("cert.pem"), key = dir.file("key.pem");
  const auto made = test::run_process({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                       "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                                       "subjectAltName=IP:127.0.0.1,DNS:localhost"},
                                      dir);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const auto db = dir.file("results.db");
  const std::vector<std::string> tls = {"deploy.tls_cert=" + cert, "deploy.tls_key=" + key};
  auto c = start_coordinator(dir, db, 1, tls);
  ChildGuard coordinator(c.pid);
  ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
  // Plaintext cannot join.
  const auto plain = test::run_process({STARLING_BIN, "node", "--coordinator", "127.0.0.1:" + c.port, "--connect-timeout", "2"}, dir);
  EXPECT_EQ(plain.exit_code, 1) << plain.err;
  EXPECT_NE(plain.err.find("could not join"), std::string::npos) << plain.err;
  const pid_t node = start_node(dir, c.port, {"--tls-ca", cert});
  ChildGuard node_guard(node);
  const auto r = test::wait_for(c.pid, c.out, c.err);
  coordinator.release();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(deployed(db), simulated({}));
  // `launch` passes the certificate to its node processes.
  const auto config = dir.write("tls.yaml", kConfig + "deploy: { tls_cert: " + cert + ", tls_key: " + key + " }\n");
  const auto launched = test::run_process({STARLING_BIN, "launch", config, "--procs", "2", "--db", dir.file("l.db"), "--quiet"}, dir);
  EXPECT_EQ(launched.exit_code, 0) << launched.err;
}

// A raw gRPC client speaking to the coordinator the way a broken or hostile node process would.
class RawClient {
 public:
  explicit RawClient(const std::string& port) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    stub_ = wire::Coordinator::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + port, grpc::InsecureChannelCredentials(), args));
  }
  grpc::Status join(const std::string& token, int first, int last, wire::JoinReply* reply) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    wire::JoinRequest req;
    req.set_token(token);
    req.set_first_node(first);
    req.set_last_node(last);
    return stub_->Join(&ctx, req, reply);
  }
  // Joins, says hello, and sends `bad` once the run has started; returns how the stream ended
  // (a Stop frame's reason is appended to the status message).
  // With `send_at_once`, `bad` is asked once right after the Ready, before the run starts.
  grpc::Status exchange(const std::string& hello_token,
                        const std::function<bool(wire::Envelope&, const wire::JoinReply&, const wire::NodeMessage* model)>& bad,
                        bool send_at_once = false) {
    // The nodes of the previous refused stream are freed a moment after it ends (and those of
    // a process that never said a valid Hello, after deploy.heartbeat_timeout_s).
    wire::JoinReply reply;
    grpc::Status joined;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((joined = join(kToken, -1, -1, &reply)).error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!joined.ok()) return joined;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = stub_->Exchange(&ctx);
    wire::Envelope e;
    e.mutable_hello()->set_token(hello_token);
    e.mutable_hello()->set_process(reply.process());
    stream->Write(e);
    e.mutable_ready();
    stream->Write(e);
    std::string stop;
    bool sent = false;
    if (send_at_once) {
      wire::Envelope out;
      if (bad(out, reply, nullptr)) sent = stream->Write(out);
    }
    while (stream->Read(&e)) {
      if (e.has_stop()) stop = e.stop().status() + ": " + e.stop().reason();
      if (sent || e.has_stop()) continue;
      const wire::NodeMessage* model = e.has_message() ? &e.message() : nullptr;
      if (!e.has_start() && !model) continue;
      wire::Envelope out;
      if (!bad(out, reply, model)) continue;  // waits for a model
      stream->Write(out);
      sent = true;
    }
    const grpc::Status s = stream->Finish();
    return stop.empty() ? s : grpc::Status(grpc::StatusCode::ABORTED, stop);
  }

 private:
  std::unique_ptr<wire::Coordinator::Stub> stub_;
};

wire::NodeMessage update(int sender, int round, std::string payload) {
  wire::NodeMessage m;
  m.set_kind(2);
  m.set_round(round);
  m.set_sender(sender);
  m.set_receiver(0);
  m.set_num_samples(10);
  m.set_payload(std::move(payload));
  return m;
}

TEST(Deploy, BadTokensAndMalformedMessagesAreRefusedAndTheRunGoesOn) {
  TempDir dir;
  const auto db = dir.file("results.db");
  auto c = start_coordinator(dir, db, 1,
                             {"rounds=40", "protocol.deadline=0.2", "deploy.max_message_mb=1",
                              "deploy.heartbeat_timeout_s=1"});
  ChildGuard coordinator(c.pid);
  ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
  RawClient client(c.port);
  wire::JoinReply reply;
  EXPECT_EQ(client.join("wrong", -1, -1, &reply).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(client.join(kToken, 0, 3, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // node 0 is the server
  EXPECT_EQ(client.join(kToken, 5, 999, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const auto any = [](wire::Envelope&, const wire::JoinReply&, const wire::NodeMessage*) { return false; };
  EXPECT_EQ(client.exchange("wrong", any).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Structural checks: the stream ends with INVALID_ARGUMENT naming the fault.
  struct Case {
    wire::NodeMessage message;
    std::string says;
  };
  std::vector<Case> cases = {
      {update(0, 1, ""), "unknown sender"},
      {update(1, 1, ""), "unknown receiver"},
      {update(1, 1, ""), "unknown message kind"},
      {update(1, 4000, ""), "wrong round"},
      {update(1, 1, std::string(1536 * 1024, 'x')), "deploy.max_message_mb"},
  };
  cases[1].message.set_receiver(99);
  cases[2].message.set_kind(77);
  for (const auto& k : cases) {
    const auto s = client.exchange(kToken, [&](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage*) {
      *out.mutable_message() = k.message;
      return true;
    });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << k.says << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(k.says), std::string::npos) << s.error_message();
  }
  // A node process may report metrics of its own nodes only.
  const auto report = client.exchange(kToken, [](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage*) {
    auto* m = out.mutable_report()->add_metrics();
    m->set_round(1);
    m->set_node(0);
    m->set_name("test_accuracy");
    m->set_value(1.0);
    return true;
  });
  EXPECT_EQ(report.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << report.error_message();
  EXPECT_NE(report.error_message().find("does not host"), std::string::npos) << report.error_message();
  // Far over the limit: gRPC itself refuses the frame.
  const auto huge = client.exchange(kToken, [](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage*) {
    *out.mutable_message() = update(1, 1, std::string(3 << 20, 'x'));
    return true;
  });
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << huge.error_message();

  // Well-formed frames the server refuses: garbage instead of an encoded update, and an update
  // for a round that has not started. The coordinator sends Stop (rejected) with the reason.
  const auto garbage = client.exchange(kToken, [](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage* model) {
    if (!model) return false;
    *out.mutable_message() = update(model->receiver(), model->round(), "\x01\x02\x03 not an update");
    return true;
  });
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::ABORTED) << garbage.error_message();
  EXPECT_EQ(garbage.error_message().rfind("rejected: ", 0), 0u) << garbage.error_message();
  const auto future = client.exchange(kToken, [](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage* model) {
    if (!model) return false;
    *out.mutable_message() = update(model->receiver(), model->round() + 2, "");
    return true;
  });
  EXPECT_EQ(future.error_code(), grpc::StatusCode::ABORTED) << future.error_message();
  EXPECT_NE(future.error_message().find("unexpected update"), std::string::npos) << future.error_message();

  // None of it stopped the coordinator: a real node process joins and the run finishes.
  const pid_t node = start_node(dir, c.port);
  ChildGuard node_guard(node);
  const auto r = test::wait_for(c.pid, c.out, c.err);
  coordinator.release();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_status(db), "finished: ");
  EXPECT_EQ(DbReader(db).scalar("SELECT COUNT(DISTINCT round) FROM metrics"), "40");
  EXPECT_NE(r.err.find("refused a message"), std::string::npos);  // and each refusal was logged
}

// A process whose machine cannot build the run ends it at once, saying why (not after the join timeout).
TEST(Deploy, NodeThatCannotBuildTheRunFailsItAtOnce) {
  TempDir dir;
  const auto db = dir.file("results.db");
  auto c = start_coordinator(dir, db, 1, {});
  ChildGuard coordinator(c.pid);
  ASSERT_FALSE(c.port.empty()) << test::read_text(c.err);
  RawClient client(c.port);
  const auto started = std::chrono::steady_clock::now();
  const auto s = client.exchange(kToken, [](wire::Envelope& out, const wire::JoinReply&, const wire::NodeMessage*) {
    out.mutable_leave()->set_reason("data.path: no such folder here");
    out.mutable_leave()->set_fatal(true);
    return true;
  }, /*send_at_once=*/true);
  const auto r = test::wait_for(c.pid, c.out, c.err);
  coordinator.release();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  const std::string status = run_status(db);
  EXPECT_EQ(status.rfind("failed: ", 0), 0u) << status;
  EXPECT_NE(status.find("data.path: no such folder here"), std::string::npos) << status;
}

}  // namespace
}  // namespace starling
