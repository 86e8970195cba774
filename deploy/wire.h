// The deployment's wire: Message <-> proto, the checks on what arrives, and the per-stream outbox.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "nodes/message.h"
#include "nodes/probe.h"
#include "proto/starling.grpc.pb.h"

namespace starling {

// The message's fields and its payload bytes, unchanged.
void to_proto(const Message& message, wire::NodeMessage& out);
Message from_proto(wire::NodeMessage&& in);

// Bytes a frame takes on a gRPC stream: the serialized envelope plus gRPC's 5-byte message prefix
// (compression flag and length). HTTP/2 and TCP headers come on top.
inline std::int64_t frame_bytes(const wire::Envelope& e) { return static_cast<std::int64_t>(e.ByteSizeLong()) + 5; }

// What a message from a node process may carry. An empty optional: acceptable; otherwise why not.
struct MessageLimits {
  NodeId first = 0, last = -1;  // the senders the process hosts
  NodeId nodes = 0;             // receivers are 0 .. nodes - 1
  int rounds = 0;               // rounds are 0 .. rounds (messages: + 1, in flight as the run ends)
  std::int64_t max_payload_bytes = 0;
};
std::optional<std::string> check_message(const wire::NodeMessage& m, const MessageLimits& limits);
void to_proto(const Observation& observation, wire::Observation& out);
Observation from_proto(const wire::Observation& in);

// A node process reports metrics of its own nodes (or global ones) for rounds of the run only.
std::optional<std::string> check_report(const wire::MetricsReport& r, const MessageLimits& limits);
// An observation of a node the process hosts, of a round of the run, with a whole number of floats.
std::optional<std::string> check_observation(const wire::Observation& o, const MessageLimits& limits);

// Frames waiting for a stream's writer thread. close() lets the writer drain what is queued and end.
class Outbox {
 public:
  void push(wire::Envelope envelope) {
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      queue_.push_back(std::move(envelope));
    }
    cv_.notify_one();
  }
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  // The next frame; nullopt once closed and drained.
  std::optional<wire::Envelope> pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return std::nullopt;
    wire::Envelope e = std::move(queue_.front());
    queue_.pop_front();
    return e;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<wire::Envelope> queue_;
  bool closed_ = false;
};

}  // namespace starling
