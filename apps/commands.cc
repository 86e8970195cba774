#include "apps/commands.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "apps/progress.h"
#include "config/experiment.h"
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

}  // namespace

int run_command(const RunArgs& args) {
  std::unique_ptr<RunPlan> plan;
  try {
    const auto doc = load_config(args.config_path, args.overrides);
    plan = build_run(doc, std::filesystem::path(args.config_path).stem().string());
  } catch (const ConfigError& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  } catch (const DataError& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
  const std::string db_path = args.db.empty() ? plan->db_path : args.db;
  std::unique_ptr<ResultsDb> db;
  std::int64_t run_id = 0;
  try {
    db = std::make_unique<ResultsDb>(db_path);
    run_id = db->begin_run(plan->name, plan->resolved_config, plan->seed, STARLING_VERSION);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }
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
    progress.finish();
    db->end_run(run_id, "failed", e.what());
    spdlog::error("run {} failed: {}", run_id, e.what());
    return kExitRunFailed;
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
  if (!args.quiet) {
    const auto row = db->run(run_id);
    spdlog::info("run {} finished: test_accuracy {}, {} on the wire, {} s simulated, {} s wall", run_id,
                 format_optional(row->test_accuracy, "%.4f"), row->bytes_total ? human_bytes(*row->bytes_total) : "-",
                 format_optional(row->sim_time, "%.1f"), format_optional(row->wall_seconds, "%.1f"));
  }
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

}  // namespace starling
