// Building and running whole simulations from YAML inside a test (for tests linking config/sim).
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "sim/sim_runtime.h"
#include "test_util.h"

namespace starling::test {

// `yaml` with `--set`-style overrides applied ("key.path=value").
inline YAML::Node config_with(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  YAML::Node doc = YAML::Load(yaml);
  for (const auto& o : overrides) Section::apply_override(doc, o);
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

// Runs `plan` to the end with `threads` workers, collecting every metric row in memory.
inline MemorySink run_plan(RunPlan& plan, int threads = 1) {
  MemorySink sink;
  auto options = plan.sim;
  options.threads = threads;
  SimRuntime rt(std::move(plan.nodes), options, sink);
  EXPECT_EQ(rt.run(), SimRuntime::Outcome::kFinished);
  return sink;
}

}  // namespace starling::test
