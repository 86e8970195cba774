// starling: run simulated federated / decentralized learning experiments and query results.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  using namespace starling;
  // Messages go to stderr: stdout carries only command output (tables, CSV).
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("starling", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%^[%l]%$ %v");
  CLI::App app{"Starling: a fast, deterministic simulator for federated and decentralized learning"};
  app.require_subcommand(1);
  app.set_version_flag("--version", STARLING_VERSION);

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run the experiment of a YAML config");
  run_cmd->add_option("config", run.config_path, "Experiment config (YAML)")->required();
  run_cmd->add_option("--set", run.overrides, "Override a config value: key.path=value (repeatable)");
  run_cmd->add_option("--unset", run.unsets, "Remove a key of the config: key.path (repeatable, after --set)");
  run_cmd->add_option("--db", run.db, "Results database (default: log.db of the config)");
  run_cmd->add_option("--threads", run.threads, "Worker threads for local training (results do not depend on it)")
      ->check(CLI::Range(1, 1024));
  run_cmd->add_flag("--quiet,-q", run.quiet, "No progress output");
  // Used by `sweep` for each of its runs; not for users.
  run_cmd->add_option("--sweep-name", run.sweep_name)->group("");
  run_cmd->add_option("--sweep-repeat", run.sweep_repeat)->group("");
  run_cmd->add_option("--sweep-param", run.sweep_params)->group("");

  SweepArgs sweep;
  auto* sweep_cmd = app.add_subcommand("sweep", "Run every point of a config's sweep: section (grid x repeat)");
  sweep_cmd->add_option("config", sweep.run.config_path, "Experiment config (YAML) with a sweep: section")->required();
  sweep_cmd->add_option("--set", sweep.run.overrides, "Override a config value for every run: key.path=value");
  sweep_cmd->add_option("--unset", sweep.run.unsets, "Remove a key of the config for every run: key.path");
  sweep_cmd->add_option("--db", sweep.run.db, "Results database (default: log.db of the config)");
  sweep_cmd->add_option("--jobs,-j", sweep.jobs, "Runs at once (each a separate process)")->check(CLI::Range(1, 256));
  sweep_cmd->add_option("--threads", sweep.run.threads, "Worker threads of each run")->check(CLI::Range(1, 1024));
  sweep_cmd->add_flag("--quiet,-q", sweep.run.quiet, "No progress output");
  sweep_cmd->add_flag("--check", sweep.check, "Build every point (data included) and run none: a bad point fails now");

  CoordinatorArgs coord;
  auto* coord_cmd = app.add_subcommand("coordinator", "Coordinate a deployed run: hand out nodes and the config over gRPC");
  coord_cmd->add_option("config", coord.run.config_path, "Experiment config (YAML)")->required();
  coord_cmd->add_option("--listen", coord.listen, "Address to serve on, host:port (port 0: any free one)")->capture_default_str();
  coord_cmd->add_option("--procs", coord.procs, "Node processes that will join (the client nodes are split among them)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  coord_cmd->add_option("--token", coord.token, "Shared secret node processes must present (default: $STARLING_TOKEN)");
  coord_cmd->add_option("--set", coord.run.overrides, "Override a config value: key.path=value (repeatable)");
  coord_cmd->add_option("--unset", coord.run.unsets, "Remove a key of the config: key.path (repeatable, after --set)");
  coord_cmd->add_option("--db", coord.run.db, "Results database (default: log.db of the config)");
  coord_cmd->add_option("--threads", coord.run.threads, "Compute threads of the coordinator's own nodes")->check(CLI::Range(1, 1024));
  coord_cmd->add_flag("--quiet,-q", coord.run.quiet, "No progress output");
  coord_cmd->add_option("--port-file", coord.port_file, "Write the bound port to this file once listening");

  NodeArgs node;
  bool node_quiet = false;
  auto* node_cmd = app.add_subcommand("node", "Host a block of nodes of a deployed run (joins a coordinator)");
  node_cmd->add_option("--coordinator", node.coordinator, "The coordinator's address, host:port")->required();
  node_cmd->add_option("--nodes", node.nodes, "Node ids to host, e.g. 1-25 (default: the coordinator picks a block)");
  node_cmd->add_option("--token", node.token, "The coordinator's token (default: $STARLING_TOKEN)");
  node_cmd->add_option("--tls-ca", node.tls_ca, "Connect with TLS, trusting the root certificates in this PEM file");
  node_cmd->add_option("--threads", node.threads, "Compute threads")->check(CLI::Range(1, 1024));
  node_cmd->add_option("--connect-timeout", node.connect_timeout_s, "Seconds to wait for the coordinator")
      ->capture_default_str();
  node_cmd->add_flag("--quiet,-q", node_quiet, "Warnings and errors only");
  node_cmd->add_option("--crash-at-round", node.crash_at_round)->group("");  // tests: die mid-round

  LaunchArgs launch;
  auto* launch_cmd = app.add_subcommand("launch", "Run a config as a coordinator and N node processes on this machine");
  launch_cmd->add_option("config", launch.run.config_path, "Experiment config (YAML)")->required();
  launch_cmd->add_option("--procs", launch.procs, "Node processes")->check(CLI::Range(1, 1024))->capture_default_str();
  launch_cmd->add_option("--set", launch.run.overrides, "Override a config value: key.path=value (repeatable)");
  launch_cmd->add_option("--unset", launch.run.unsets, "Remove a key of the config: key.path (repeatable, after --set)");
  launch_cmd->add_option("--db", launch.run.db, "Results database (default: log.db of the config)");
  launch_cmd->add_option("--threads", launch.run.threads, "Compute threads of each process")->check(CLI::Range(1, 1024));
  launch_cmd->add_flag("--quiet,-q", launch.run.quiet, "No progress output");

  std::string db = "results/starling.db";
  long long run_id = 0;
  std::string format = "csv", output;
  auto* runs_cmd = app.add_subcommand("runs", "List the runs of a results database");
  runs_cmd->add_option("--db", db, "Results database")->capture_default_str();
  auto* show_cmd = app.add_subcommand("show", "Show a run's config and final metrics");
  show_cmd->add_option("run_id", run_id, "Run id (see `starling runs`)")->required();
  show_cmd->add_option("--db", db, "Results database")->capture_default_str();
  auto* export_cmd = app.add_subcommand("export", "Export a run's metrics");
  export_cmd->add_option("run_id", run_id, "Run id (see `starling runs`)")->required();
  export_cmd->add_option("--db", db, "Results database")->capture_default_str();
  export_cmd->add_option("--format", format, "Output format: csv")->capture_default_str();
  export_cmd->add_option("--output,-o", output, "Output file (default: standard output)");

  std::string plugin_kind, plugin_name;
  bool markdown = false;
  auto* plugins_cmd = app.add_subcommand("plugins", "List the plugins of every kind, with their parameters and traits");
  plugins_cmd->add_option("kind", plugin_kind, "A plugin kind (protocol, compressor, ...): its plugins with their parameters");
  plugins_cmd->add_option("name", plugin_name, "A plugin of that kind: its parameters and traits");
  plugins_cmd->add_flag("--markdown", markdown, "The complete config reference as Markdown (docs/config.md)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (*run_cmd) return run_command(run);
    if (*sweep_cmd) return sweep_command(sweep);
    if (*coord_cmd) return coordinator_command(coord);
    if (*node_cmd) {
      if (node_quiet) spdlog::set_level(spdlog::level::warn);
      return node_command(node);
    }
    if (*launch_cmd) return launch_command(launch);
    if (*plugins_cmd) return plugins_command(plugin_kind, plugin_name, markdown);
    if (*runs_cmd) return runs_command(db);
    if (*show_cmd) return show_command(db, run_id);
    if (*export_cmd) return export_command(db, run_id, format, output);
  } catch (const ConfigError& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitRunFailed;
  }
  return kExitUsage;
}
