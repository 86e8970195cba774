#include "deploy/coordinator.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/section.h"
#include "deploy/runtime.h"
#include "deploy/wire.h"

namespace starling {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kServerNode = -2;  // owner_ of a node the coordinator hosts

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

std::string range_text(NodeId a, NodeId b) { return a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b); }

class Coordinator final : public wire::Coordinator::Service, public RuntimeHost {
 public:
  Coordinator(DeployedRun run, const CoordinatorOptions& options, MetricSink& sink)
      : options_(options), sink_(sink), nodes_(static_cast<NodeId>(run.nodes.nodes.size())), rounds_(run.rounds),
        config_yaml_(std::move(run.config_yaml)),
        max_payload_(static_cast<std::int64_t>(options.max_message_mb * 1024 * 1024)),
        owner_(static_cast<std::size_t>(nodes_), -1) {
    for (NodeId s : run.server_nodes) owner_[static_cast<std::size_t>(s)] = kServerNode;
    server_based_ = !run.server_nodes.empty();
    clients_ = nodes_ - static_cast<NodeId>(run.server_nodes.size());
    block_ = std::max<NodeId>(1, (clients_ + options.procs - 1) / std::max(options.procs, 1));
    rt_ = std::make_unique<GrpcRuntime>(io_, std::move(run.nodes), run.server_nodes, run.seed, options.threads, *this);
  }

  CoordinatorResult run() {
    grpc::ServerBuilder builder;
    int port = 0;
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    if (!options_.tls_cert_pem.empty()) {
      grpc::SslServerCredentialsOptions tls;
      tls.pem_key_cert_pairs.push_back({options_.tls_key_pem, options_.tls_cert_pem});
      credentials = grpc::SslServerCredentials(tls);
    }
    builder.AddListeningPort(options_.listen, credentials, &port);
    builder.RegisterService(this);
    // Frames a little over the payload limit reach check_message, which says why; far larger ones
    // gRPC refuses itself (RESOURCE_EXHAUSTED).
    builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::int64_t>(max_payload_ + (1 << 20), INT32_MAX)));
    builder.SetMaxSendMessageSize(-1);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0) throw Error("coordinator: cannot listen on " + options_.listen + " (address in use or invalid)");
    if (!options_.port_file.empty()) {  // written whole, then renamed: a reader never sees half a port
      const std::string tmp = options_.port_file + ".tmp";
      std::ofstream(tmp) << port << "\n";
      std::filesystem::rename(tmp, options_.port_file);
    }
    spdlog::info("coordinator listening on {} (port {}{}): {} nodes, {} hosted here, {} for node processes in blocks of {}",
                 options_.listen, port, options_.tls_cert_pem.empty() ? "" : ", TLS", nodes_, nodes_ - clients_, clients_, block_);

    auto guard = boost::asio::make_work_guard(io_);
    boost::asio::signal_set signals(io_, SIGINT, SIGTERM);
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (!ec) end(CoordinatorResult::Status::kInterrupted, "stopped by signal " + std::to_string(sig));
    });
    boost::asio::steady_timer join_timer(io_, std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(options_.join_timeout_s)));
    join_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || started_) return;
      std::lock_guard lock(mu_);
      const auto hosted = std::count_if(owner_.begin(), owner_.end(), [](int o) { return o >= 0; });
      end_locked_later(CoordinatorResult::Status::kFailed,
                       "only " + std::to_string(hosted) + " of " + std::to_string(clients_) +
                           " client nodes joined within deploy.join_timeout_s = " + Section::shortest(options_.join_timeout_s) +
                           " s; start node processes with `starling node --coordinator ADDR`");
    });
    heartbeat_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
    check_heartbeats();
    if (clients_ == 0) boost::asio::post(io_, [this] { maybe_start(); });

    io_.run();
    rt_->shutdown();
    {
      std::lock_guard lock(mu_);
      for (auto& [id, p] : procs_) p->outbox.close();
    }
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
    result_.bytes_total = bytes_total_;
    result_.grpc_bytes_total = grpc_bytes_total_;
    return result_;
  }

  // ---- gRPC handlers (gRPC's threads) ----

  grpc::Status Join(grpc::ServerContext* ctx, const wire::JoinRequest* req, wire::JoinReply* reply) override {
    if (req->token() != options_.token) {
      spdlog::warn("refused a join from {}: bad token", ctx->peer());
      return {grpc::StatusCode::UNAUTHENTICATED, "bad token: give the coordinator's token (STARLING_TOKEN or --token)"};
    }
    std::lock_guard lock(mu_);
    if (finished_) return {grpc::StatusCode::UNAVAILABLE, "the run is over"};
    NodeId first = req->first_node(), last = req->last_node();
    if (first == -1 && last == -1) {
      first = 0;
      while (first < nodes_ && owner_[static_cast<std::size_t>(first)] != -1) ++first;
      if (first == nodes_) return {grpc::StatusCode::RESOURCE_EXHAUSTED, "every node of the run already has a process"};
      last = first;
      while (last + 1 < nodes_ && last + 1 - first < block_ && owner_[static_cast<std::size_t>(last + 1)] == -1) ++last;
    } else {
      if (first < 0 || last < first || last >= nodes_)
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "--nodes " + range_text(first, last) + " is not a range of the run's nodes 0-" + std::to_string(nodes_ - 1)};
      for (NodeId i = first; i <= last; ++i) {
        const int o = owner_[static_cast<std::size_t>(i)];
        if (o == kServerNode)
          return {grpc::StatusCode::INVALID_ARGUMENT, "node " + std::to_string(i) + " is the server; the coordinator hosts it"};
        if (o != -1)
          return {grpc::StatusCode::ALREADY_EXISTS, "node " + std::to_string(i) + " is hosted by process " + std::to_string(o)};
      }
    }
    auto p = std::make_shared<Proc>();
    p->id = next_process_++;
    p->first = first;
    p->last = last;
    p->host = req->host().empty() ? ctx->peer() : req->host();
    p->last_seen = now_ns();
    for (NodeId i = first; i <= last; ++i) owner_[static_cast<std::size_t>(i)] = p->id;
    procs_[p->id] = p;
    reply->set_process(p->id);
    reply->set_first_node(first);
    reply->set_last_node(last);
    reply->set_config_yaml(config_yaml_);
    reply->set_nodes(nodes_);
    reply->set_heartbeat_ms(options_.heartbeat_ms);
    spdlog::info("process {} ({}) joined: nodes {}", p->id, p->host, range_text(first, last));
    return grpc::Status::OK;
  }

  grpc::Status Exchange(grpc::ServerContext* ctx, grpc::ServerReaderWriter<wire::Envelope, wire::Envelope>* stream) override {
    wire::Envelope env;
    if (!stream->Read(&env)) return {grpc::StatusCode::CANCELLED, "the stream closed before its Hello"};
    if (!env.has_hello()) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "the first frame of a stream must be a Hello", ctx);
    if (env.hello().token() != options_.token)
      return refuse(grpc::StatusCode::UNAUTHENTICATED, "bad token: give the coordinator's token (STARLING_TOKEN or --token)", ctx);
    std::shared_ptr<Proc> p;
    {
      std::lock_guard lock(mu_);
      const auto it = procs_.find(env.hello().process());
      if (it == procs_.end() || it->second->lost || it->second->ctx)
        return refuse(grpc::StatusCode::FAILED_PRECONDITION,
                      "process " + std::to_string(env.hello().process()) + " is unknown, lost or already connected: Join first", ctx);
      p = it->second;
      p->ctx = ctx;
      p->last_seen = now_ns();
    }
    std::thread writer([&] {
      while (auto frame = p->outbox.pop())
        if (!stream->Write(*frame)) break;
      if (p->cancel_after_drain) ctx->TryCancel();
    });
    const MessageLimits limits{p->first, p->last, nodes_, rounds_, max_payload_};
    grpc::Status status = grpc::Status::OK;
    std::string reason = "its stream closed";
    while (stream->Read(&env)) {
      p->last_seen = now_ns();
      if (env.has_message()) {
        if (auto why = check_message(env.message(), limits)) {
          spdlog::warn("refused a message from process {}: {}", p->id, *why);
          status = {grpc::StatusCode::INVALID_ARGUMENT, *why};
          reason = "it sent a bad message (" + *why + ")";
          break;
        }
        const std::int64_t frame = frame_bytes(env);
        boost::asio::post(io_, [this, id = p->id, frame, m = std::make_shared<Message>(from_proto(std::move(*env.mutable_message())))] {
          route_message(std::move(*m), id, frame);
        });
      } else if (env.has_heartbeat()) {
      } else if (env.has_ready()) {
        {
          std::lock_guard lock(mu_);
          p->ready = true;
        }
        boost::asio::post(io_, [this, p] { connected(p); });
      } else if (env.has_report()) {
        if (auto why = check_report(env.report(), limits)) {
          spdlog::warn("refused a report from process {}: {}", p->id, *why);
          status = {grpc::StatusCode::INVALID_ARGUMENT, *why};
          reason = "it sent a bad report (" + *why + ")";
          break;
        }
        boost::asio::post(io_, [this, r = std::make_shared<wire::MetricsReport>(std::move(*env.mutable_report()))] { report(*r); });
      } else if (env.has_observation()) {
        if (auto why = check_observation(env.observation(), limits)) {
          spdlog::warn("refused an observation from process {}: {}", p->id, *why);
          status = {grpc::StatusCode::INVALID_ARGUMENT, *why};
          reason = "it sent a bad observation (" + *why + ")";
          break;
        }
        const std::int64_t frame = frame_bytes(env);
        boost::asio::post(io_, [this, id = p->id, frame, o = std::make_shared<Observation>(from_proto(env.observation()))] {
          if (finished_) return;
          probe_bytes_total_ += frame;
          rt_->record(std::move(*o), id);
        });
      } else if (env.has_leave()) {
        reason = "it left: " + env.leave().reason();
        if (env.leave().fatal()) end(CoordinatorResult::Status::kFailed, "node process " + std::to_string(p->id) + " (" + p->host + "): " + env.leave().reason());
        break;
      } else {
        status = {grpc::StatusCode::INVALID_ARGUMENT, "unexpected control frame from a node process"};
        reason = "it sent an unexpected control frame";
        break;
      }
    }
    if (ctx->IsCancelled() && status.ok()) reason = "its stream was cancelled (process died or was dropped)";
    {
      std::lock_guard lock(mu_);
      p->ctx = nullptr;  // lose() must not cancel the call: the status below is the answer
      p->outbox.close();
    }
    boost::asio::post(io_, [this, p, reason] { lose(p, reason); });
    writer.join();
    return status;
  }

  // ---- RuntimeHost (the io thread) ----

  void route(Message message) override { route_message(std::move(message), -1, 0); }
  MetricSink& sink() override { return sink_; }
  void finish_round(int round) override {
    while (!traffic_.empty() && traffic_.begin()->first <= round) {
      for (const auto& [link, t] : traffic_.begin()->second)
        sink_.traffic(traffic_.begin()->first, link.first, link.second, t.first, t.second);
      traffic_.erase(traffic_.begin());
    }
    const SimTime t = rt_->now();
    sink_.metric(round, t, kNoNode, "bytes_total", static_cast<double>(bytes_total_));
    sink_.metric(round, t, kNoNode, "grpc_bytes_total", static_cast<double>(grpc_bytes_total_));
    if (probe_bytes_total_ > 0)  // observations relayed to the run's probe: measurement, not protocol traffic
      sink_.metric(round, t, kNoNode, "grpc_probe_bytes_total", static_cast<double>(probe_bytes_total_));
    sink_.metric(round, t, kNoNode, "wall_seconds", to_seconds(t));
    sink_.end_round(round);
  }
  void stop() override { end(CoordinatorResult::Status::kFinished, ""); }
  void reject(int origin, const std::string& reason) override {
    spdlog::warn("refused a message from process {}: {}", origin, reason);
    std::lock_guard lock(mu_);
    const auto it = procs_.find(origin);
    if (it == procs_.end()) return;
    wire::Envelope stop;
    stop.mutable_stop()->set_status("rejected");
    stop.mutable_stop()->set_reason(reason);
    it->second->outbox.push(std::move(stop));
    it->second->cancel_after_drain = true;
    it->second->outbox.close();
  }
  void fail(const std::string& error) override { end(CoordinatorResult::Status::kFailed, error); }

 private:
  struct Proc {
    int id = 0;
    NodeId first = 0, last = -1;
    std::string host;
    grpc::ServerContext* ctx = nullptr;  // while its Exchange stream is open
    bool lost = false;
    bool ready = false;  // its nodes are built: it takes messages
    std::atomic<bool> cancel_after_drain{false};
    std::atomic<std::int64_t> last_seen{0};
    Outbox outbox;
  };

  grpc::Status refuse(grpc::StatusCode code, const std::string& why, grpc::ServerContext* ctx) {
    spdlog::warn("refused a stream from {}: {}", ctx->peer(), why);
    return {code, why};
  }

  void connected(const std::shared_ptr<Proc>& p) {
    if (finished_ || p->lost) return;
    if (started_) {
      spdlog::info("process {} rejoined: nodes {}", p->id, range_text(p->first, p->last));
      p->outbox.push(start_frame());
      return;
    }
    maybe_start();
  }

  wire::Envelope start_frame() const {
    wire::Envelope e;
    e.mutable_start()->set_start_unix_ns(std::chrono::system_clock::now().time_since_epoch().count());
    return e;
  }

  void maybe_start() {
    std::vector<std::shared_ptr<Proc>> ready;
    {
      std::lock_guard lock(mu_);
      if (started_ || finished_) return;
      for (NodeId i = 0; i < nodes_; ++i) {
        const int o = owner_[static_cast<std::size_t>(i)];
        if (o == kServerNode) continue;
        if (o < 0 || !procs_.at(o)->ctx || !procs_.at(o)->ready) return;
      }
      started_ = true;
      for (auto& [id, p] : procs_)
        if (!p->lost) ready.push_back(p);
    }
    spdlog::info("all {} client nodes hosted by {} processes: the run starts", clients_, ready.size());
    for (auto& p : ready) p->outbox.push(start_frame());
    rt_->start();
  }

  void route_message(Message m, int origin, std::int64_t in_frame) {
    if (finished_) return;
    bytes_total_ += m.wire_bytes();
    grpc_bytes_total_ += in_frame;
    auto& link = traffic_[m.round][{m.sender, m.receiver}];
    link.first += m.wire_bytes();
    link.second += 1;
    if (rt_->hosts(m.receiver)) return rt_->deliver(std::move(m), origin);
    std::shared_ptr<Proc> p;
    {
      std::lock_guard lock(mu_);
      const int o = owner_[static_cast<std::size_t>(m.receiver)];
      if (o >= 0 && procs_.at(o)->ctx && procs_.at(o)->ready) p = procs_.at(o);
    }
    if (!p) {
      spdlog::debug("dropped a {} message to node {}: no process hosts it", to_string(m.kind), m.receiver);
      return;
    }
    wire::Envelope env;
    to_proto(m, *env.mutable_message());
    grpc_bytes_total_ += frame_bytes(env);
    p->outbox.push(std::move(env));
  }

  void report(const wire::MetricsReport& r) {
    if (finished_) return;
    for (const auto& m : r.metrics()) sink_.metric(m.round(), m.time_ns(), m.node(), m.name(), m.value());
    if (r.finished_round() > 0) finish_round(r.finished_round());
    if (r.stop()) stop();
  }

  void lose(const std::shared_ptr<Proc>& p, const std::string& reason) {
    {
      std::lock_guard lock(mu_);
      if (p->lost || finished_) return;
      p->lost = true;
      for (NodeId i = p->first; i <= p->last; ++i)
        if (owner_[static_cast<std::size_t>(i)] == p->id) owner_[static_cast<std::size_t>(i)] = -1;
      if (p->ctx) p->ctx->TryCancel();
    }
    const std::string what = "node process " + std::to_string(p->id) + " (nodes " + range_text(p->first, p->last) +
                             ") was dropped: " + reason;
    if (started_ && !options_.round_deadline)
      return end(CoordinatorResult::Status::kFailed,
                 what + (server_based_ ? "; without protocol.deadline the server would wait for its nodes forever"
                                       : "; the other nodes would wait for its models forever (decentralized runs need every node)"));
    spdlog::warn("{}; its nodes miss their rounds until a process joins for them", what);
  }

  void check_heartbeats() {
    std::vector<std::shared_ptr<Proc>> silent;
    {
      std::lock_guard lock(mu_);
      const std::int64_t limit = static_cast<std::int64_t>(options_.heartbeat_timeout_s * 1e9);
      for (auto& [id, p] : procs_)
        if (!p->lost && now_ns() - p->last_seen > limit) silent.push_back(p);
    }
    for (auto& p : silent) lose(p, "no heartbeat for " + std::to_string(options_.heartbeat_timeout_s) + " s");
    heartbeat_timer_->expires_after(std::chrono::milliseconds(options_.heartbeat_ms));
    heartbeat_timer_->async_wait([this](const boost::system::error_code& ec) {
      if (!ec) check_heartbeats();
    });
  }

  // Ends the run: every node process gets Stop, and the io loop returns.
  void end(CoordinatorResult::Status status, const std::string& error) {
    std::lock_guard lock(mu_);
    end_locked_later(status, error);
  }
  void end_locked_later(CoordinatorResult::Status status, const std::string& error) {
    if (finished_) return;
    finished_ = true;
    result_.status = status;
    result_.error = error;
    const char* text = status == CoordinatorResult::Status::kFinished      ? "finished"
                       : status == CoordinatorResult::Status::kInterrupted ? "interrupted"
                                                                           : "failed";
    for (auto& [id, p] : procs_) {
      wire::Envelope stop;
      stop.mutable_stop()->set_status(text);
      stop.mutable_stop()->set_reason(error);
      p->outbox.push(std::move(stop));
      p->outbox.close();
    }
    io_.stop();
  }

  CoordinatorOptions options_;
  MetricSink& sink_;
  NodeId nodes_, clients_ = 0, block_ = 1;
  bool server_based_ = false;
  int rounds_;
  std::string config_yaml_;
  std::int64_t max_payload_;
  boost::asio::io_context io_;
  std::unique_ptr<GrpcRuntime> rt_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<boost::asio::steady_timer> heartbeat_timer_;

  std::mutex mu_;  // the tables below, shared by gRPC's threads and the io thread
  std::vector<int> owner_;  // node -> process hosting it; -1 none; kServerNode the coordinator
  std::map<int, std::shared_ptr<Proc>> procs_;
  int next_process_ = 1;
  std::atomic<bool> started_{false}, finished_{false};

  // The io thread's alone.
  std::int64_t bytes_total_ = 0, grpc_bytes_total_ = 0, probe_bytes_total_ = 0;
  std::map<int, std::map<std::pair<NodeId, NodeId>, std::pair<std::int64_t, std::int64_t>>> traffic_;
  CoordinatorResult result_;
};

}  // namespace

CoordinatorResult run_coordinator(DeployedRun run, const CoordinatorOptions& options, MetricSink& sink) {
  Coordinator coordinator(std::move(run), options, sink);
  return coordinator.run();
}

}  // namespace starling
