// Progress display: a live bar on a terminal, plain lines otherwise, nothing with --quiet.
#pragma once
#include <chrono>
#include <cstdio>
#include <optional>

#include "core/metric_sink.h"

namespace starling {

class Progress final : public MetricSink {
 public:
  enum class Mode { kBar, kLines, kQuiet };
  Progress(int total_rounds, Mode mode, std::FILE* out = stderr);
  static Mode mode_for(bool quiet, std::FILE* out);

  void metric(int round, SimTime time, NodeId node, std::string_view name, double value) override;
  void traffic(int, NodeId, NodeId, std::int64_t, std::int64_t) override {}
  void end_round(int round) override;
  void finish();  // ends the bar's line

 private:
  int total_;
  Mode mode_;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_;
  std::optional<double> accuracy_;
  bool evaluated_this_round_ = false;
  double sim_seconds_ = 0.0;
  bool drew_ = false;
};

}  // namespace starling
