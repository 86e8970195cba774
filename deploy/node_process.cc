#include "deploy/node_process.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "deploy/runtime.h"
#include "deploy/wire.h"

namespace starling {

namespace {

// Metrics, finished rounds and stop() of this process's nodes go to the coordinator as reports.
class NodeProcess final : public RuntimeHost, public MetricSink {
 public:
  explicit NodeProcess(Outbox& out) : out_(out) {}

  void route(Message message) override {
    wire::Envelope e;
    to_proto(message, *e.mutable_message());
    out_.push(std::move(e));
  }
  MetricSink& sink() override { return *this; }
  void finish_round(int round) override {
    wire::Envelope e;
    e.mutable_report()->set_finished_round(round);
    out_.push(std::move(e));
  }
  void stop() override {
    wire::Envelope e;
    e.mutable_report()->set_stop(true);
    out_.push(std::move(e));
  }
  void reject(int, const std::string& reason) override { fail("a message from the coordinator was refused: " + reason); }
  void fail(const std::string& error) override {
    if (exit_code == 0) exit_code = 1;
    spdlog::error("node process: {}", error);
    leave(error);
  }

  void metric(int round, SimTime time, NodeId node, std::string_view name, double value) override {
    wire::Envelope e;
    auto* m = e.mutable_report()->add_metrics();
    m->set_round(round);
    m->set_time_ns(time);
    m->set_node(node);
    m->set_name(std::string(name));
    m->set_value(value);
    out_.push(std::move(e));
  }
  // Traffic is counted by the coordinator, which relays every message.
  void traffic(int, NodeId, NodeId, std::int64_t, std::int64_t) override {}
  void end_round(int) override {}

  void leave(const std::string& reason) {
    wire::Envelope e;
    e.mutable_leave()->set_reason(reason);
    out_.push(std::move(e));
    out_.close();
    if (io) io->stop();
  }

  boost::asio::io_context* io = nullptr;
  int exit_code = 0;

 private:
  Outbox& out_;
};

}  // namespace

int run_node_process(const NodeProcessOptions& options, const RunBuilder& build) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // the coordinator is trusted; it enforces the limit on what we send
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = options.tls_ca_pem;
    credentials = grpc::SslCredentials(tls);
  }
  auto channel = grpc::CreateCustomChannel(options.coordinator, credentials, args);
  auto stub = wire::Coordinator::NewStub(channel);
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<std::int64_t>(options.connect_timeout_s * 1000));

  wire::JoinRequest req;
  req.set_token(options.token);
  req.set_first_node(options.first);
  req.set_last_node(options.last);
  char hostname[256] = {};
  gethostname(hostname, sizeof hostname - 1);
  req.set_host(std::string(hostname) + " pid " + std::to_string(getpid()));
  wire::JoinReply reply;
  {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);  // the coordinator may still be loading its data
    ctx.set_deadline(deadline);
    const grpc::Status s = stub->Join(&ctx, req, &reply);
    if (!s.ok()) {
      spdlog::error("node process: could not join the coordinator at {}: {} (gRPC status {})", options.coordinator,
                    s.error_message(), static_cast<int>(s.error_code()));
      return 1;
    }
  }
  spdlog::info("node process {}: hosting nodes {}-{} of {}", reply.process(), reply.first_node(), reply.last_node(),
               reply.nodes());
  const auto heartbeat_frame = [] {
    wire::Envelope e;
    e.mutable_heartbeat()->set_sent_unix_ns(std::chrono::system_clock::now().time_since_epoch().count());
    return e;
  };
  // The stream opens at once: heartbeats flow while the data loads, Ready says the nodes are built.
  Outbox out;
  grpc::ClientContext ctx;
  auto stream = stub->Exchange(&ctx);
  {
    wire::Envelope hello;
    hello.mutable_hello()->set_token(options.token);
    hello.mutable_hello()->set_process(reply.process());
    out.push(std::move(hello));
  }
  std::thread writer([&] {
    while (auto frame = out.pop())
      if (!stream->Write(*frame)) break;
    stream->WritesDone();
  });
  const auto abandon = [&](int code) {
    out.close();
    writer.join();
    ctx.TryCancel();
    stream->Finish();
    return code;
  };
  // This machine cannot build the run: no other process could do better, so the run ends.
  const auto cannot_build = [&](const std::string& why) {
    spdlog::error("node process: {}", why);
    wire::Envelope leave;
    leave.mutable_leave()->set_reason(why);
    leave.mutable_leave()->set_fatal(true);
    out.push(std::move(leave));
    return abandon(2);
  };
  HostedRun run;
  {
    std::mutex mu;
    std::condition_variable cv;
    bool built = false;
    std::thread beat([&] {
      std::unique_lock lock(mu);
      while (!cv.wait_for(lock, std::chrono::milliseconds(std::max(reply.heartbeat_ms(), 10)), [&] { return built; }))
        out.push(heartbeat_frame());
    });
    const auto done = [&] {
      {
        std::lock_guard lock(mu);
        built = true;
      }
      cv.notify_all();
      beat.join();
    };
    try {
      run = build(reply.config_yaml());
    } catch (const Error& e) {
      done();
      return cannot_build(std::string("the coordinator's config does not build on this node's machine: ") + e.what());
    }
    done();
  }
  if (static_cast<int>(run.nodes.nodes.size()) != reply.nodes())
    return cannot_build("the config builds " + std::to_string(run.nodes.nodes.size()) + " nodes here, the coordinator has " +
                        std::to_string(reply.nodes()) + " (different Starling versions?)");
  std::vector<NodeId> hosted;
  for (NodeId i = reply.first_node(); i <= reply.last_node(); ++i) hosted.push_back(i);

  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  NodeProcess host(out);
  host.io = &io;
  if (run.nodes.probe)  // the coordinator's copy of the probe records what our nodes observe
    run.nodes.probe->relay_to([&out](Observation&& o) {
      wire::Envelope e;
      to_proto(o, *e.mutable_observation());
      out.push(std::move(e));
    });
  GrpcRuntime rt(io, std::move(run.nodes), hosted, run.seed, options.threads, host);
  {
    wire::Envelope ready;
    ready.mutable_ready();
    out.push(std::move(ready));
  }
  bool ended = false;  // the coordinator sent Stop
  std::thread reader([&] {
    wire::Envelope env;
    while (stream->Read(&env)) {
      if (env.has_message()) {
        if (options.crash_at_round > 0 && env.message().round() >= options.crash_at_round) {
          spdlog::warn("node process {}: crashing on purpose (--crash-at-round {})", reply.process(), options.crash_at_round);
          std::_Exit(137);
        }
        boost::asio::post(io, [&rt, m = std::make_shared<Message>(from_proto(std::move(*env.mutable_message())))] {
          rt.deliver(std::move(*m), 0);
        });
      } else if (env.has_start()) {
        boost::asio::post(io, [&rt] { rt.start(); });
      } else if (env.has_stop()) {
        const std::string status = env.stop().status(), reason = env.stop().reason();
        boost::asio::post(io, [&, status, reason] {
          ended = true;
          if (status == "finished") {
            spdlog::info("node process {}: the run finished", reply.process());
          } else {
            spdlog::error("node process {}: the coordinator ended our part: {}{}", reply.process(), status,
                          reason.empty() ? "" : ": " + reason);
            host.exit_code = status == "interrupted" ? 130 : 1;
          }
          out.close();
          io.stop();
        });
      }
    }
    boost::asio::post(io, [&] {
      if (ended) return;
      spdlog::error("node process {}: lost the coordinator's stream", reply.process());
      if (host.exit_code == 0) host.exit_code = 1;
      out.close();
      io.stop();
    });
  });

  boost::asio::steady_timer heartbeat(io);
  std::function<void()> beat = [&] {
    out.push(heartbeat_frame());
    heartbeat.expires_after(std::chrono::milliseconds(std::max(reply.heartbeat_ms(), 10)));
    heartbeat.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) beat();
    });
  };
  beat();
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::warn("node process {}: signal {}, leaving", reply.process(), sig);
    host.exit_code = 130;
    host.leave("signal " + std::to_string(sig));
  });

  io.run();
  rt.shutdown();
  out.close();
  writer.join();
  ctx.TryCancel();  // ends the reader's Read if the coordinator keeps the stream open
  reader.join();
  stream->Finish();
  return host.exit_code;
}

}  // namespace starling
