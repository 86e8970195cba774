// The SQLite results database (schema in README "Results database"; DESIGN §3).
//
// WAL mode, one transaction per round: a run killed at any moment leaves a database that opens,
// passes PRAGMA integrity_check and holds every round committed before the kill.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "core/metric_sink.h"

struct sqlite3;
struct sqlite3_stmt;

namespace starling {

// 1: runs, metrics, traffic. 2: + run_config, sweep_runs, sweep_params and the views
// final_metrics, metric_progress, run_summary (a version-1 database is upgraded in place).
inline constexpr int kSchemaVersion = 2;

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// What is recorded about a run besides its YAML config.
struct RunMeta {
  KeyValues config_values;  // the resolved config flattened to key paths ("train.lr" -> "0.1")
  std::string sweep;        // sweep name, empty for a run outside a sweep
  int repeat = 0;           // repetition index within the sweep
  KeyValues sweep_params;   // the swept keys and this run's values
};

class ResultsDb {
 public:
  // Opens (creating the file, its folder and the schema if needed). Throws Error naming the file.
  explicit ResultsDb(const std::string& path);
  ~ResultsDb();
  ResultsDb(const ResultsDb&) = delete;
  ResultsDb& operator=(const ResultsDb&) = delete;

  std::int64_t begin_run(const std::string& name, const std::string& config, std::uint64_t seed,
                         const std::string& version, const RunMeta& meta = {});
  // status: finished | failed | interrupted (error may be empty).
  void end_run(std::int64_t run_id, const std::string& status, const std::string& error = "");

  struct RunRow {
    std::int64_t run_id = 0;
    std::string name, status, started_at, finished_at, error, config;
    std::int64_t seed = 0;
    std::optional<double> test_accuracy, bytes_total, sim_time, wall_seconds;
    std::int64_t rounds = 0;
  };
  std::vector<RunRow> runs();
  std::optional<RunRow> run(std::int64_t run_id);
  std::int64_t last_run_id();
  // The last recorded value of every global metric of a run, by name.
  std::vector<std::pair<std::string, double>> final_metrics(std::int64_t run_id);
  // Every metric row of a run as CSV (round,sim_time,node,name,value).
  void export_csv(std::int64_t run_id, std::ostream& out);

  sqlite3* handle() { return db_; }
  const std::string& path() const { return path_; }

  void exec(const std::string& sql);

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// MetricSink for one run: buffers the rows of a round and commits them in one transaction.
class RunWriter final : public MetricSink {
 public:
  RunWriter(ResultsDb& db, std::int64_t run_id);
  ~RunWriter() override;
  void metric(int round, SimTime time, NodeId node, std::string_view name, double value) override;
  void traffic(int round, NodeId src, NodeId dst, std::int64_t bytes, std::int64_t messages) override;
  void end_round(int round) override;

 private:
  struct MetricRow {
    int round;
    double sim_time;
    NodeId node;
    std::string name;
    double value;
  };
  struct TrafficRow {
    int round;
    NodeId src, dst;
    std::int64_t bytes, messages;
  };
  ResultsDb& db_;
  std::int64_t run_id_;
  sqlite3_stmt* insert_metric_ = nullptr;
  sqlite3_stmt* insert_traffic_ = nullptr;
  std::vector<MetricRow> metrics_;
  std::vector<TrafficRow> traffic_;
};

}  // namespace starling
