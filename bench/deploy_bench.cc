// Update throughput of the gRPC deployment over loopback, against a raw TCP copy in the same run.
//
// BM_GrpcUpdate: one model update of d floats per iteration, the way a node process sends it: the
// payload is copied into a NodeMessage (to_proto), written on a bidirectional Exchange stream,
// read by the server, turned back into a Message (from_proto, payload copied again) and acknowledged
// with a small frame. BM_TcpCopy: the same bytes written on a plain 127.0.0.1 TCP socket, read
// whole into a buffer by the receiver and acknowledged with one byte: the transport's ceiling.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "deploy/wire.h"

namespace starling {
namespace {

class EchoService final : public wire::Coordinator::Service {
 public:
  grpc::Status Exchange(grpc::ServerContext*, grpc::ServerReaderWriter<wire::Envelope, wire::Envelope>* stream) override {
    wire::Envelope in, ack;
    ack.mutable_heartbeat()->set_sent_unix_ns(1);
    while (stream->Read(&in)) {
      if (!in.has_message()) continue;
      const Message m = from_proto(std::move(*in.mutable_message()));
      benchmark::DoNotOptimize(m.payload_size());
      if (!stream->Write(ack)) break;
    }
    return grpc::Status::OK;
  }
};

Payload random_payload(std::int64_t d) {
  Payload p(static_cast<std::size_t>(4 * d));
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (auto& b : p) b = static_cast<std::uint8_t>((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
  return p;
}

void BM_GrpcUpdate(benchmark::State& state) {
  const std::int64_t d = state.range(0);
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(-1);
  auto server = builder.BuildAndStart();
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  auto stub = wire::Coordinator::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  auto stream = stub->Exchange(&ctx);
  Message m;
  m.kind = MessageKind::kUpdate;
  m.round = 1;
  m.sender = 1;
  m.receiver = 0;
  m.set_payload(random_payload(d));
  wire::Envelope out, ack;
  for (auto _ : state) {
    to_proto(m, *out.mutable_message());
    if (!stream->Write(out) || !stream->Read(&ack)) state.SkipWithError("stream broke");
  }
  stream->WritesDone();
  stream->Finish();
  server->Shutdown();
  state.SetBytesProcessed(state.iterations() * 4 * d);
}

bool send_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, 0);
    if (k <= 0) return false;
    p += k, n -= static_cast<std::size_t>(k);
  }
  return true;
}
bool recv_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k <= 0) return false;
    p += k, n -= static_cast<std::size_t>(k);
  }
  return true;
}

void BM_TcpCopy(benchmark::State& state) {
  const std::int64_t d = state.range(0);
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    state.SkipWithError("cannot listen on 127.0.0.1");
    return;
  }
  std::thread receiver([listener] {
    const int fd = ::accept(listener, nullptr, nullptr);
    std::vector<char> buffer;
    std::uint64_t size = 0;
    const char ack = 1;
    while (recv_all(fd, &size, sizeof size)) {
      buffer.resize(size);
      if (!recv_all(fd, buffer.data(), size) || !send_all(fd, &ack, 1)) break;
    }
    ::close(fd);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) state.SkipWithError("cannot connect");
  const Payload payload = random_payload(d);
  const std::uint64_t size = payload.size();
  char ack = 0;
  for (auto _ : state)
    if (!send_all(fd, &size, sizeof size) || !send_all(fd, payload.data(), payload.size()) || !recv_all(fd, &ack, 1))
      state.SkipWithError("socket broke");
  ::close(fd);
  receiver.join();
  ::close(listener);
  state.SetBytesProcessed(state.iterations() * 4 * d);
}

BENCHMARK(BM_GrpcUpdate)->ArgName("d")->Arg(1'000'000)->Arg(10'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TcpCopy)->ArgName("d")->Arg(1'000'000)->Arg(10'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace starling

BENCHMARK_MAIN();
