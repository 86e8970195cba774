// Building and running whole simulations from YAML inside a test (for tests linking config/sim).
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "config/sections.h"
#include "sim/sim_runtime.h"
#include "test_util.h"

namespace starling::test {

// `yaml` with `--set`-style overrides applied ("key.path=value") as the command line applies
// them: switching a kind drops the old kind's keys.
inline YAML::Node config_with(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  YAML::Node doc = YAML::Load(yaml);
  apply_overrides(doc, overrides);
  return doc;
}

inline std::unique_ptr<RunPlan> plan_from(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return build_run(config_with(yaml, overrides));
}

// Building `yaml` with `overrides` throws a ConfigError naming `key` (and saying `words`, if given).
inline void expect_config_error(const std::string& yaml, const std::vector<std::string>& overrides,
                                const std::string& key, const std::string& words = "") {
  try {
    plan_from(yaml, overrides);
    ADD_FAILURE() << "expected a ConfigError naming " << key;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

// Every metric row but wall_seconds has the same name, node, time and bits; traffic is the same.
inline void expect_identical_runs(const MemorySink& one, const MemorySink& two, const std::string& label = "") {
  ASSERT_EQ(one.metrics.size(), two.metrics.size()) << label;
  for (std::size_t i = 0; i < one.metrics.size(); ++i) {
    if (one.metrics[i].name == "wall_seconds") continue;
    EXPECT_EQ(one.metrics[i].name, two.metrics[i].name) << label;
    EXPECT_EQ(one.metrics[i].node, two.metrics[i].node) << label;
    EXPECT_EQ(std::memcmp(&one.metrics[i].value, &two.metrics[i].value, sizeof(double)), 0) << label << ": " << one.metrics[i].name;
    EXPECT_EQ(one.metrics[i].time, two.metrics[i].time) << label;
  }
  EXPECT_EQ(one.traffic_rows, two.traffic_rows) << label;
}

// Runs `plan` to the end with `threads` workers, collecting every metric row in memory.
inline MemorySink run_plan(RunPlan& plan, int threads = 1) {
  MemorySink sink;
  auto options = plan.sim;
  options.threads = threads;
  SimRuntime rt(std::move(plan.nodes), options, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  return sink;
}

// A Context driven by hand: node 0 at time 0; compute runs at once; what is sent and recorded is kept.
class HandContext final : public Context {
 public:
  explicit HandContext(std::uint64_t seed) : seed_(seed) {}
  NodeId self() const override { return 0; }
  SimTime now() const override { return 0; }
  void send(Message m) override {
    m.sender = 0;
    sent.push_back(std::move(m));
  }
  void set_timer(SimTime, int) override {}
  void compute(std::int64_t, std::function<void()> work, int) override {
    work();
    ++computes;
  }
  Rng& rng(Purpose purpose) override { return rngs_.try_emplace(purpose, seed_, 0, purpose).first->second; }
  MetricSink& metrics() override { return sink; }
  void finish_round(int round) override { finished.push_back(round); }
  void stop() override { stopped = true; }

  std::vector<Message> sent;
  int computes = 0;
  std::vector<int> finished;  // rounds committed
  bool stopped = false;
  MemorySink sink;

 private:
  std::uint64_t seed_;
  std::map<Purpose, Rng> rngs_;
};

}  // namespace starling::test
