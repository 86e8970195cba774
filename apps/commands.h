// The `starling` subcommands. Each returns the process exit code (DESIGN §3):
// 0 success, 1 run failure, 2 usage or config error, 130 interrupted by a signal.
#pragma once
#include <string>
#include <vector>

namespace starling {

struct RunArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key.path=value
  std::vector<std::string> unsets;     // --unset key.path (after the overrides)
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
  bool check = false;  // --check: build every point (data included), run none
};

// The gRPC deployment (README "Deployment").
struct CoordinatorArgs {
  RunArgs run;            // config, --set, --db, --threads (the coordinator's own nodes), --quiet
  std::string listen = "0.0.0.0:50051";
  int procs = 1;          // node processes that will join
  std::string token;      // empty: $STARLING_TOKEN
  std::string port_file;  // write the bound port here (for `launch`)
};
struct NodeArgs {
  std::string coordinator;  // host:port
  std::string nodes;        // "a-b" or "a": the block to host; empty: the coordinator picks
  std::string token;        // empty: $STARLING_TOKEN
  std::string tls_ca;       // PEM file of the root certificates to trust: connect with TLS
  int threads = 1;
  double connect_timeout_s = 60.0;
  int crash_at_round = 0;   // tests only
};
struct LaunchArgs {
  RunArgs run;
  int procs = 1;
};

int run_command(const RunArgs& args);
int coordinator_command(const CoordinatorArgs& args);
int node_command(const NodeArgs& args);
int launch_command(const LaunchArgs& args);
int sweep_command(const SweepArgs& args);
int runs_command(const std::string& db);
int show_command(const std::string& db, long long run_id);
int export_command(const std::string& db, long long run_id, const std::string& format, const std::string& output);

inline constexpr int kExitOk = 0, kExitRunFailed = 1, kExitUsage = 2, kExitInterrupted = 130;

// `starling plugins [KIND [NAME]]`, or the config reference as Markdown.
int plugins_command(const std::string& kind, const std::string& name, bool markdown);

}  // namespace starling
