#include "apps/commands.h"

#include <spdlog/spdlog.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "apps/progress.h"
#include "config/docs.h"
#include "config/experiment.h"
#include "config/sections.h"
#include "deploy/coordinator.h"
#include "deploy/node_process.h"
#include "store/results_db.h"

namespace starling {

namespace {

std::atomic<bool> g_interrupted{false};
// First signal: finish the current event, mark the run interrupted, keep every committed round.
// Second signal: the user insists; die at once (the database is still consistent).
extern "C" void on_signal(int sig) {
  if (g_interrupted.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

std::string format_optional(const std::optional<double>& v, const char* fmt) {
  if (!v) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) b /= 1000.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

// The database must exist for the read-only commands: do not create an empty one by accident.
std::unique_ptr<ResultsDb> open_existing(const std::string& db) {
  if (!std::filesystem::exists(db)) throw ConfigError("--db", db + ": no such results database; run an experiment first or pass --db");
  return std::make_unique<ResultsDb>(db);
}

KeyValues split_assignments(const std::vector<std::string>& assignments) {
  KeyValues out;
  for (const auto& a : assignments) {
    const auto eq = a.find('=');
    out.emplace_back(a.substr(0, eq), eq == std::string::npos ? "" : a.substr(eq + 1));
  }
  return out;
}

std::string config_stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// Opens the results database and adds the run's row (status running). False: the error is logged.
bool open_run(const RunPlan& plan, const RunArgs& args, const std::string& db_path, std::unique_ptr<ResultsDb>& db,
              std::int64_t& run_id) {
  try {
    db = std::make_unique<ResultsDb>(db_path);
    RunMeta meta{plan.config_values, args.sweep_name, args.sweep_repeat, split_assignments(args.sweep_params)};
    run_id = db->begin_run(plan.name, plan.resolved_config, plan.seed, STARLING_VERSION, meta);
    return true;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return false;
  }
}

void log_finished(ResultsDb& db, std::int64_t run_id, const char* time_kind) {
  const auto row = db.run(run_id);
  spdlog::info("run {} finished: test_accuracy {}, {} on the wire, {} s {}, {} s wall", run_id,
               format_optional(row->test_accuracy, "%.4f"), row->bytes_total ? human_bytes(*row->bytes_total) : "-",
               format_optional(row->sim_time, "%.1f"), time_kind, format_optional(row->wall_seconds, "%.1f"));
}

// The config of a run (overrides and a sweep's point applied), built. Throws Error.
std::unique_ptr<RunPlan> plan_for(const RunArgs& args) {
  auto overrides = args.overrides;
  overrides.insert(overrides.end(), args.sweep_params.begin(), args.sweep_params.end());
  std::vector<std::string> notes;
  auto doc = load_config(args.config_path, overrides, args.unsets, &notes);
  if (!args.quiet)
    for (const auto& note : notes) spdlog::info("{}", note);
  if (take_sweep(doc) && args.sweep_name.empty())
    spdlog::warn("ignoring the sweep: section of {}; `starling sweep` runs all its points", args.config_path);
  return build_run(doc, config_stem(args.config_path));
}

// A run that threw: the progress bar ends, the database records why, the exit status says so.
int record_failure(Progress& progress, ResultsDb& db, std::int64_t run_id, const std::exception& e) {
  progress.finish();
  db.end_run(run_id, "failed", e.what());
  spdlog::error("run {} failed: {}", run_id, e.what());
  return kExitRunFailed;
}

}  // namespace

int run_command(const RunArgs& args) {
  std::unique_ptr<RunPlan> plan;
  try {
    plan = plan_for(args);
  } catch (const Error& e) {  // a config key or a dataset file: the user's to fix
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  const std::string db_path = args.db.empty() ? plan->db_path : args.db;
  std::unique_ptr<ResultsDb> db;
  std::int64_t run_id = 0;
  if (!open_run(*plan, args, db_path, db, run_id)) return kExitUsage;
  if (!args.quiet)
    spdlog::info("run {} '{}': {} rounds, {} nodes, {} threads -> {}", run_id, plan->name, plan->rounds,
                 plan->nodes.nodes.size(), args.threads, db_path);

  RunWriter writer(*db, run_id);
  Progress progress(plan->rounds, Progress::mode_for(args.quiet, stderr));
  MetricTee tee;
  tee.add(&writer);
  tee.add(&progress);
  g_interrupted.store(false);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  plan->sim.threads = args.threads;
  plan->sim.interrupt = &g_interrupted;
  SimRuntime runtime(std::move(plan->nodes), plan->sim, tee);
  SimRuntime::Outcome outcome;
  try {
    outcome = runtime.run();
  } catch (const std::exception& e) {
    return record_failure(progress, *db, run_id, e);
  }
  progress.finish();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  switch (outcome) {
    case SimRuntime::Outcome::kInterrupted:
      db->end_run(run_id, "interrupted", "stopped by a signal at virtual time " + std::to_string(to_seconds(runtime.now())) + " s");
      spdlog::warn("run {} interrupted; every completed round is in {}", run_id, db_path);
      return kExitInterrupted;
    case SimRuntime::Outcome::kIdle:
      db->end_run(run_id, "failed", "the protocol stopped making progress (no events left before the last round)");
      spdlog::error("run {} failed: the protocol stopped making progress", run_id);
      return kExitRunFailed;
    case SimRuntime::Outcome::kFinished:
      break;
  }
  db->end_run(run_id, "finished");
  if (!args.quiet) log_finished(*db, run_id, "simulated");
  return kExitOk;
}

int runs_command(const std::string& db_path) {
  auto db = open_existing(db_path);
  std::printf("%5s  %-24s %-11s %6s %9s %11s %9s %8s  %s\n", "run", "name", "status", "rounds", "accuracy", "bytes",
              "sim_s", "wall_s", "started");
  for (const auto& r : db->runs())
    std::printf("%5lld  %-24s %-11s %6lld %9s %11s %9s %8s  %s\n", static_cast<long long>(r.run_id), r.name.substr(0, 24).c_str(),
                r.status.c_str(), static_cast<long long>(r.rounds), format_optional(r.test_accuracy, "%.4f").c_str(),
                r.bytes_total ? human_bytes(*r.bytes_total).c_str() : "-", format_optional(r.sim_time, "%.1f").c_str(),
                format_optional(r.wall_seconds, "%.1f").c_str(), r.started_at.c_str());
  return kExitOk;
}

int show_command(const std::string& db_path, long long run_id) {
  auto db = open_existing(db_path);
  const auto r = db->run(run_id);
  if (!r) throw ConfigError("RUN_ID", std::to_string(run_id) + " is not a run in " + db_path + "; see `starling runs`");
  std::printf("run %lld  %s  status %s  seed %lld  started %s  finished %s\n", run_id, r->name.c_str(), r->status.c_str(),
              static_cast<long long>(r->seed), r->started_at.c_str(), r->finished_at.c_str());
  if (!r->error.empty()) std::printf("error: %s\n", r->error.c_str());
  std::printf("\nconfig:\n%s\n\nfinal metrics (round %lld):\n", r->config.c_str(), static_cast<long long>(r->rounds));
  for (const auto& [name, value] : db->final_metrics(run_id)) std::printf("  %-20s %.10g\n", name.c_str(), value);
  return kExitOk;
}

int export_command(const std::string& db_path, long long run_id, const std::string& format, const std::string& output) {
  auto db = open_existing(db_path);
  if (format != "csv") throw ConfigError("--format", "\"" + format + "\" is unknown; known: csv");
  if (!db->run(run_id)) throw ConfigError("RUN_ID", std::to_string(run_id) + " is not a run in " + db_path + "; see `starling runs`");
  if (output.empty() || output == "-") {
    db->export_csv(run_id, std::cout);
  } else {
    std::ofstream out(output);
    if (!out) throw ConfigError("--output", output + ": cannot write");
    db->export_csv(run_id, out);
  }
  return kExitOk;
}

namespace {

// Arguments of one sweep run: the same binary's `run` with the point's values.
std::vector<std::string> child_arguments(const SweepArgs& args, const std::string& db_path, const std::string& sweep_name,
                                         const SweepRun& run) {
  std::vector<std::string> argv = {"starling", "run", args.run.config_path, "--db", db_path, "--threads",
                                   std::to_string(args.run.threads), "--quiet"};
  for (const auto& o : args.run.overrides) argv.insert(argv.end(), {"--set", o});
  for (const auto& u : args.run.unsets) argv.insert(argv.end(), {"--unset", u});
  argv.insert(argv.end(), {"--set", "seed=" + std::to_string(run.seed), "--sweep-name", sweep_name, "--sweep-repeat",
                           std::to_string(run.repeat)});
  for (const auto& [key, value] : run.params) argv.insert(argv.end(), {"--sweep-param", key + "=" + value});
  return argv;
}

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0)
    throw Error("cannot start a run process: " + std::string(std::strerror(errno)));
  return pid;
}

std::string describe(const SweepRun& run) {
  std::string out;
  for (const auto& [key, value] : run.params) out += key + "=" + value + " ";
  return out + "repeat " + std::to_string(run.repeat) + " (seed " + std::to_string(run.seed) + ")";
}

}  // namespace

int sweep_command(const SweepArgs& args) {
  SweepPlan sweep;
  std::string db_path = args.run.db;
  try {
    auto doc = load_config(args.run.config_path, args.run.overrides, args.run.unsets);
    const YAML::Node section = take_sweep(doc);
    if (!section) throw ConfigError("sweep", args.run.config_path + " has no sweep: section; use `starling run` for a single run");
    const std::string name = doc["name"] && doc["name"].IsScalar() ? doc["name"].Scalar() : config_stem(args.run.config_path);
    std::uint64_t base_seed = 0;
    try {
      if (doc["seed"]) base_seed = doc["seed"].as<std::uint64_t>();
    } catch (const YAML::Exception&) {
      throw ConfigError("seed", "\"" + doc["seed"].Scalar() + "\" is not a non-negative integer");
    }
    sweep = expand_sweep(section, name, base_seed);
    // Build the first point in full: a typo in the base config stops the sweep before it starts.
    YAML::Node first = YAML::Clone(doc);
    // As each run will: a point that switches a kind drops the old kind's keys.
    std::vector<std::string> first_point;
    for (const auto& [key, value] : sweep.runs.front().params) first_point.push_back(key + "=" + value);
    apply_overrides(first, first_point);
    const auto plan = build_run(first, config_stem(args.run.config_path));
    if (db_path.empty()) db_path = plan->db_path;
    if (args.check) {  // every point (the first repeat of each), as its run will build it
      for (const SweepRun& point : sweep.runs) {
        if (point.repeat != 0) continue;
        YAML::Node config = YAML::Clone(doc);
        std::vector<std::string> assignments;
        for (const auto& [key, value] : point.params) assignments.push_back(key + "=" + value);
        apply_overrides(config, assignments);
        try {
          build_run(config, config_stem(args.run.config_path));
        } catch (const Error& e) {
          throw ConfigError("", describe(point) + ": " + e.what());
        }
      }
      spdlog::info("sweep '{}': every one of its {} points builds", sweep.name, sweep.runs.size());
      return kExitOk;
    }
  } catch (const Error& e) {  // a config key or a dataset file: the user's to fix
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  ResultsDb db(db_path);  // creates the schema once, before the runs race to open it
  const std::int64_t before = db.last_run_id();
  const std::size_t total = sweep.runs.size();
  if (!args.run.quiet)
    spdlog::info("sweep '{}': {} runs, {} at a time -> {}", sweep.name, total, args.jobs, db_path);

  g_interrupted.store(false);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0, done = 0, failed = 0;
  const auto start = std::chrono::steady_clock::now();
  while (done < next || (next < total && !g_interrupted.load())) {
    while (next < total && static_cast<int>(running.size()) < args.jobs && !g_interrupted.load())
      running[spawn(child_arguments(args, db_path, sweep.name, sweep.runs[next]))] = next, ++next;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ++done;
    failed += code != 0;
    if (!args.run.quiet) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "[%zu/%zu] %s: %s  (%.1fs elapsed)\n", done, total, describe(sweep.runs[it->second]).c_str(),
                   code == 0 ? "finished" : ("exit " + std::to_string(code)).c_str(), elapsed);
    }
    running.erase(it);
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  if (!args.run.quiet)
    std::printf("sweep '%s': %zu runs in %s (run ids after %lld); tabulate with:\n  scripts/sweep_table.py %s --sweep %s\n",
                sweep.name.c_str(), done, db_path.c_str(), static_cast<long long>(before), db_path.c_str(),
                sweep.name.c_str());
  if (g_interrupted.load()) return kExitInterrupted;
  if (failed > 0) {
    spdlog::error("{} of {} runs failed (see the messages above and `starling runs --db {}`)", failed, total, db_path);
    return kExitRunFailed;
  }
  return kExitOk;
}

// ---- The gRPC deployment ----

namespace {

std::string token_from(const std::string& given) {
  if (!given.empty()) return given;
  const char* env = std::getenv("STARLING_TOKEN");
  return env ? env : "";
}

// 16 random bytes from the kernel, as hex: the shared secret of one `launch`.
std::string random_token() {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char bytes[16] = {};
  if (!urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes)) throw Error("cannot read /dev/urandom for a token");
  std::string hex;
  for (unsigned char b : bytes) {
    char buf[3];
    std::snprintf(buf, sizeof buf, "%02x", b);
    hex += buf;
  }
  return hex;
}

std::string read_pem(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) throw ConfigError(what, path + ": cannot read this PEM file");
  return text.str();
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

int coordinator_command(const CoordinatorArgs& args) {
  std::unique_ptr<RunPlan> plan;
  try {
    plan = plan_for(args.run);
    // What only the simulator can provide, refused rather than silently ignored.
    const auto value = [&](const std::string& key) {
      const auto it = std::find_if(plan->config_values.begin(), plan->config_values.end(),
                                   [&](const auto& kv) { return kv.first == key; });
      return it == plan->config_values.end() ? std::string() : it->second;
    };
    if (!plan->no_deploy.empty())
      throw ConfigError("protocol.kind", plan->no_deploy + "; it runs in the simulator only (starling run)");
    if (value("availability.kind") != "always" && !value("availability.kind").empty())
      throw ConfigError("availability.kind", "availability models are simulated; deployed, real node processes "
                                             "come and go by themselves (set availability.kind: always)");
    if (value("protocol.kind") == "modest" && !value("protocol.join.fraction").empty() &&
        std::stod(value("protocol.join.fraction")) > 0.0)
      throw ConfigError("protocol.join.fraction", "a MoDeST joiner learns the current round from the simulation's probe, "
                                                  "which a deployment keeps in the coordinator; deployed, start a node "
                                                  "process later instead (set 0)");
    if (!value("availability.dropout").empty() && std::stod(value("availability.dropout")) > 0.0)
      throw ConfigError("availability.dropout", "dropout is simulated; deployed, kill node processes instead (set 0)");
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  if (args.run.quiet) spdlog::set_level(spdlog::level::warn);
  const std::string token = token_from(args.token);
  if (token.empty()) {
    spdlog::error("--token: the coordinator needs a token that node processes must present (--token or STARLING_TOKEN)");
    return kExitUsage;
  }
  const std::string db_path = args.run.db.empty() ? plan->db_path : args.run.db;
  std::unique_ptr<ResultsDb> db;
  std::int64_t run_id = 0;
  if (!open_run(*plan, args.run, db_path, db, run_id)) return kExitUsage;
  if (!args.run.quiet)
    spdlog::info("run {} '{}' (deployed): {} rounds, {} nodes -> {}", run_id, plan->name, plan->rounds,
                 plan->nodes.nodes.size(), db_path);
  RunWriter writer(*db, run_id);
  Progress progress(plan->rounds, Progress::mode_for(args.run.quiet, stderr));
  MetricTee tee;
  tee.add(&writer);
  tee.add(&progress);
  CoordinatorOptions options;
  options.listen = args.listen;
  options.token = token;
  options.procs = args.procs;
  options.port_file = args.port_file;
  options.threads = args.run.threads;
  options.max_message_mb = plan->deploy.max_message_mb;
  options.heartbeat_ms = plan->deploy.heartbeat_ms;
  options.heartbeat_timeout_s = plan->deploy.heartbeat_timeout_s;
  options.join_timeout_s = plan->deploy.join_timeout_s;
  options.round_deadline = plan->round_deadline;
  try {
    if (!plan->deploy.tls_cert.empty()) {
      options.tls_cert_pem = read_pem(plan->deploy.tls_cert, "deploy.tls_cert");
      options.tls_key_pem = read_pem(plan->deploy.tls_key, "deploy.tls_key");
    }
  } catch (const ConfigError& e) {
    db->end_run(run_id, "failed", e.what());
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  DeployedRun run{std::move(plan->nodes), plan->server_nodes, plan->seed, plan->rounds, plan->resolved_config};
  CoordinatorResult result;
  try {
    result = run_coordinator(std::move(run), options, tee);
  } catch (const std::exception& e) {
    return record_failure(progress, *db, run_id, e);
  }
  progress.finish();
  switch (result.status) {
    case CoordinatorResult::Status::kInterrupted:
      db->end_run(run_id, "interrupted", result.error);
      spdlog::warn("run {} interrupted ({}); every completed round is in {}", run_id, result.error, db_path);
      return kExitInterrupted;
    case CoordinatorResult::Status::kFailed:
      db->end_run(run_id, "failed", result.error);
      spdlog::error("run {} failed: {}", run_id, result.error);
      return kExitRunFailed;
    case CoordinatorResult::Status::kFinished:
      break;
  }
  db->end_run(run_id, "finished");
  if (!args.run.quiet) {
    log_finished(*db, run_id, "real");
    spdlog::info("gRPC frames: {} for {} of messages", human_bytes(static_cast<double>(result.grpc_bytes_total)),
                 human_bytes(static_cast<double>(result.bytes_total)));
  }
  return kExitOk;
}

int node_command(const NodeArgs& args) {
  NodeProcessOptions options;
  options.coordinator = args.coordinator;
  options.token = token_from(args.token);
  if (!args.tls_ca.empty()) options.tls_ca_pem = read_pem(args.tls_ca, "--tls-ca");
  options.threads = args.threads;
  options.connect_timeout_s = args.connect_timeout_s;
  options.crash_at_round = args.crash_at_round;
  if (!args.nodes.empty()) {
    const auto dash = args.nodes.find('-');
    try {
      std::size_t used = 0;
      options.first = std::stoi(args.nodes.substr(0, dash), &used);
      if (used != (dash == std::string::npos ? args.nodes.size() : dash)) throw std::invalid_argument("");
      options.last = dash == std::string::npos ? options.first : std::stoi(args.nodes.substr(dash + 1), &used);
      if (dash != std::string::npos && used != args.nodes.size() - dash - 1) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw ConfigError("--nodes", "\"" + args.nodes + "\" is not a node id or a range like 1-25");
    }
    if (options.first < 0 || options.last < options.first)
      throw ConfigError("--nodes", "\"" + args.nodes + "\" is not a range of node ids (first <= last, from 0)");
  }
  const RunBuilder build = [](const std::string& yaml) {
    YAML::Node doc;
    try {
      doc = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
      throw ConfigError("", std::string("the coordinator's config is not valid YAML: ") + e.what());
    }
    std::shared_ptr<RunPlan> plan = build_run(doc, "deployed");
    HostedRun hosted;
    hosted.nodes = std::move(plan->nodes);
    hosted.seed = plan->seed;
    hosted.keep_alive = plan;
    return hosted;
  };
  return run_node_process(options, build);
}

int launch_command(const LaunchArgs& args) {
  // With TLS the node processes trust the coordinator's own certificate (it must name 127.0.0.1).
  std::string tls_ca;
  try {
    const YAML::Node doc = load_config(args.run.config_path, args.run.overrides, args.run.unsets);
    if (doc["deploy"] && doc["deploy"]["tls_cert"]) tls_ca = doc["deploy"]["tls_cert"].as<std::string>();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  const std::string token = random_token();
  setenv("STARLING_TOKEN", token.c_str(), 1);  // the children inherit it; it never shows in `ps`
  const auto port_file =
      (std::filesystem::temp_directory_path() / ("starling-launch-" + std::to_string(getpid()) + ".port")).string();
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {"starling", "coordinator", args.run.config_path, "--listen", "127.0.0.1:0",
                                   "--procs", std::to_string(args.procs), "--port-file", port_file,
                                   "--threads", std::to_string(args.run.threads)};
  for (const auto& o : args.run.overrides) argv.insert(argv.end(), {"--set", o});
  for (const auto& u : args.run.unsets) argv.insert(argv.end(), {"--unset", u});
  if (!args.run.db.empty()) argv.insert(argv.end(), {"--db", args.run.db});
  if (args.run.quiet) argv.push_back("--quiet");

  g_interrupted.store(false);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const pid_t coordinator = spawn(argv);
  bool forwarded = false;
  const auto forward_signal = [&] {
    if (g_interrupted.load() && !forwarded) {
      kill(coordinator, SIGTERM);  // it ends the run (interrupted) and stops the node processes
      forwarded = true;
    }
  };
  // The coordinator writes its port once it listens (after loading the data).
  std::string port;
  int status = 0;
  while (port.empty()) {
    if (waitpid(coordinator, &status, WNOHANG) == coordinator) {
      std::filesystem::remove(port_file);
      return exit_code_of(status);
    }
    forward_signal();
    std::ifstream(port_file) >> port;
    if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::filesystem::remove(port_file);
  std::vector<pid_t> nodes;
  for (int i = 0; i < args.procs; ++i) {
    std::vector<std::string> node = {"starling", "node", "--coordinator", "127.0.0.1:" + port, "--threads",
                                     std::to_string(args.run.threads), "--quiet"};
    if (!tls_ca.empty()) node.insert(node.end(), {"--tls-ca", tls_ca});
    nodes.push_back(spawn(node));
  }
  int code = kExitRunFailed;
  while (true) {
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) {
        forward_signal();
        continue;
      }
      break;
    }
    if (pid == coordinator) {
      code = exit_code_of(status);
      break;
    }
    nodes.erase(std::remove(nodes.begin(), nodes.end(), pid), nodes.end());
    if (exit_code_of(status) != 0) spdlog::warn("node process {} exited with code {}", pid, exit_code_of(status));
  }
  // The coordinator sent every node process Stop; give them a moment, then end the stragglers.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!nodes.empty() && std::chrono::steady_clock::now() < until) {
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) nodes.erase(std::remove(nodes.begin(), nodes.end(), pid), nodes.end());
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (pid_t pid : nodes) {
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return code;
}

int plugins_command(const std::string& kind, const std::string& name, bool markdown) {
  if (markdown && !kind.empty()) throw ConfigError("plugins", "--markdown renders the whole reference; give no kind");
  std::cout << (markdown ? config_reference_markdown() : plugins_text(kind, name));
  return kExitOk;
}

}  // namespace starling
