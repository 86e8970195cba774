// The `starling` subcommands. Each returns the process exit code (DESIGN §3):
// 0 success, 1 run failure, 2 usage or config error, 130 interrupted by a signal.
#pragma once
#include <string>
#include <vector>

namespace starling {

struct RunArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key.path=value
  std::string db;                      // --db (empty: log.db from the config)
  int threads = 1;
  bool quiet = false;
  // Set by `starling sweep` for each of its runs (hidden options of `run`).
  std::string sweep_name;
  int sweep_repeat = 0;
  std::vector<std::string> sweep_params;  // key.path=value, applied after `overrides`
};

struct SweepArgs {
  RunArgs run;   // config, overrides, db, threads (per run), quiet
  int jobs = 1;  // runs at once
};

int run_command(const RunArgs& args);
int sweep_command(const SweepArgs& args);
int runs_command(const std::string& db);
int show_command(const std::string& db, long long run_id);
int export_command(const std::string& db, long long run_id, const std::string& format, const std::string& output);

inline constexpr int kExitOk = 0, kExitRunFailed = 1, kExitUsage = 2, kExitInterrupted = 130;

}  // namespace starling
