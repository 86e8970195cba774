// Where metrics go. Nodes and runtimes see only this interface; store/ writes SQLite,
// apps/ adds a progress display, tests collect rows in memory.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/types.h"

namespace starling {

class MetricSink {
 public:
  virtual ~MetricSink() = default;
  // One value; node == kNoNode marks a global metric.
  virtual void metric(int round, SimTime time, NodeId node, std::string_view name, double value) = 0;
  // Bytes and messages sent from src to dst during `round`.
  virtual void traffic(int round, NodeId src, NodeId dst, std::int64_t bytes, std::int64_t messages) = 0;
  // Every row of `round` has been reported: make them durable together.
  virtual void end_round(int round) = 0;
};

// Forwards every call to several sinks, in order.
class MetricTee final : public MetricSink {
 public:
  void add(MetricSink* sink) { sinks_.push_back(sink); }
  void metric(int round, SimTime time, NodeId node, std::string_view name, double value) override {
    for (auto* s : sinks_) s->metric(round, time, node, name, value);
  }
  void traffic(int round, NodeId src, NodeId dst, std::int64_t bytes, std::int64_t messages) override {
    for (auto* s : sinks_) s->traffic(round, src, dst, bytes, messages);
  }
  void end_round(int round) override {
    for (auto* s : sinks_) s->end_round(round);
  }

 private:
  std::vector<MetricSink*> sinks_;
};

}  // namespace starling
