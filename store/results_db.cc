#include "store/results_db.h"

#include <sqlite3.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <ostream>

#include "core/error.h"

namespace starling {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS runs(
  run_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  config TEXT NOT NULL,
  seed INTEGER,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  started_at TEXT,
  finished_at TEXT,
  version TEXT,
  error TEXT);
CREATE TABLE IF NOT EXISTS metrics(
  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  round INTEGER NOT NULL,
  sim_time REAL NOT NULL,
  node INTEGER,
  name TEXT NOT NULL,
  value REAL);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, name, round);
CREATE TABLE IF NOT EXISTS traffic(
  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  round INTEGER NOT NULL,
  src INTEGER NOT NULL,
  dst INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  messages INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS traffic_by_run ON traffic(run_id, round);
CREATE TABLE IF NOT EXISTS run_config(
  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT,
  PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS sweep_runs(
  run_id INTEGER PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
  sweep TEXT NOT NULL,
  repeat INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sweep_params(
  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT,
  PRIMARY KEY (run_id, key));
-- The last value of every global metric of every run.
CREATE VIEW IF NOT EXISTS final_metrics AS
  SELECT m.run_id, m.name, m.round, m.sim_time, m.value FROM metrics m
  WHERE m.node IS NULL
    AND m.round = (SELECT MAX(x.round) FROM metrics x WHERE x.run_id = m.run_id AND x.node IS NULL AND x.name = m.name);
-- Every global metric row with the bytes on the wire spent by then: time-to-target queries, e.g.
--   SELECT run_id, MIN(round), MIN(bytes_total), MIN(sim_time) FROM metric_progress
--   WHERE name = 'test_accuracy' AND value >= 0.8 GROUP BY run_id;
CREATE VIEW IF NOT EXISTS metric_progress AS
  SELECT m.run_id, m.round, m.sim_time, m.name, m.value,
         (SELECT b.value FROM metrics b WHERE b.run_id = m.run_id AND b.node IS NULL AND b.name = 'bytes_total'
           AND b.round = m.round) AS bytes_total
  FROM metrics m WHERE m.node IS NULL;
-- One row per run: identity, key config values, final results.
CREATE VIEW IF NOT EXISTS run_summary AS
  SELECT r.run_id, r.name, r.status, s.sweep, s.repeat, r.seed,
         (SELECT value FROM run_config c WHERE c.run_id = r.run_id AND c.key = 'protocol.kind') AS protocol,
         (SELECT value FROM run_config c WHERE c.run_id = r.run_id AND c.key = 'model.kind') AS model,
         (SELECT value FROM run_config c WHERE c.run_id = r.run_id AND c.key = 'data.dataset') AS dataset,
         (SELECT value FROM run_config c WHERE c.run_id = r.run_id AND c.key = 'data.clients') AS clients,
         (SELECT COALESCE(MAX(round), 0) FROM metrics m WHERE m.run_id = r.run_id) AS rounds,
         (SELECT value FROM final_metrics f WHERE f.run_id = r.run_id AND f.name = 'test_accuracy') AS test_accuracy,
         (SELECT value FROM final_metrics f WHERE f.run_id = r.run_id AND f.name = 'bytes_total') AS bytes_total,
         (SELECT MAX(sim_time) FROM metrics m WHERE m.run_id = r.run_id) AS sim_time,
         (SELECT value FROM final_metrics f WHERE f.run_id = r.run_id AND f.name = 'wall_seconds') AS wall_seconds,
         r.started_at, r.finished_at, r.error, r.config
  FROM runs r LEFT JOIN sweep_runs s ON s.run_id = r.run_id;
)sql";

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw Error(std::string("SQLite: ") + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  Statement& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(stmt_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(std::string("SQLite: ") + sqlite3_errmsg(db_));
  }
  std::int64_t integer(int col) { return sqlite3_column_int64(stmt_, col); }
  double real(int col) { return sqlite3_column_double(stmt_, col); }
  bool null(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<double> optional_real(int col) { return null(col) ? std::nullopt : std::optional<double>(real(col)); }
  std::string text(int col) {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }

 private:
  Statement& check(int rc) {
    if (rc != SQLITE_OK) throw Error(std::string("SQLite: ") + sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

void check(sqlite3* db, int rc, const std::string& what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw Error("SQLite error " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

ResultsDb::ResultsDb(const std::string& path) : path_(path) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(path + ": cannot open the results database (" + msg + "); choose another path with --db or log.db");
  }
  sqlite3_busy_timeout(db_, 10000);
  try {
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");  // in WAL mode: durable against process crashes
    exec("PRAGMA foreign_keys=ON");
    std::int64_t v = 0;
    {  // finalized before BEGIN: a live read would make the write lock fail at once instead of waiting
      Statement version(db_, "PRAGMA user_version");
      version.step();
      v = version.integer(0);
    }
    if (v > kSchemaVersion)
      throw Error(path + ": results database schema version " + std::to_string(v) + " is newer than this Starling (" +
                  std::to_string(kSchemaVersion) + "); upgrade Starling or use another --db");
    exec("BEGIN IMMEDIATE");
    exec(kSchema);
    exec("PRAGMA user_version = " + std::to_string(kSchemaVersion));
    exec("COMMIT");
  } catch (const Error& e) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(path + ": " + e.what());
  }
}

ResultsDb::~ResultsDb() { sqlite3_close(db_); }

void ResultsDb::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    throw Error("SQLite: " + msg);
  }
}

std::int64_t ResultsDb::begin_run(const std::string& name, const std::string& config, std::uint64_t seed,
                                  const std::string& version, const RunMeta& meta) {
  exec("BEGIN IMMEDIATE");  // the run and its metadata appear together
  try {
    Statement s(db_,
                "INSERT INTO runs(name, config, seed, status, started_at, version) "
                "VALUES(?, ?, ?, 'running', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), ?)");
    s.bind(1, name).bind(2, config).bind(3, static_cast<std::int64_t>(seed)).bind(4, version);
    s.step();
    const std::int64_t run_id = sqlite3_last_insert_rowid(db_);
    const auto insert_pairs = [&](const char* sql, const KeyValues& pairs) {
      Statement insert(db_, sql);
      for (const auto& [key, value] : pairs) {
        insert.reset();
        insert.bind(1, run_id).bind(2, key).bind(3, value);
        insert.step();
      }
    };
    insert_pairs("INSERT INTO run_config(run_id, key, value) VALUES(?, ?, ?)", meta.config_values);
    if (!meta.sweep.empty()) {
      Statement sweep(db_, "INSERT INTO sweep_runs(run_id, sweep, repeat) VALUES(?, ?, ?)");
      sweep.bind(1, run_id).bind(2, meta.sweep).bind(3, std::int64_t{meta.repeat});
      sweep.step();
      insert_pairs("INSERT INTO sweep_params(run_id, key, value) VALUES(?, ?, ?)", meta.sweep_params);
    }
    exec("COMMIT");
    return run_id;
  } catch (...) {
    exec("ROLLBACK");
    throw;
  }
}

std::int64_t ResultsDb::last_run_id() {
  Statement s(db_, "SELECT COALESCE(MAX(run_id), 0) FROM runs");
  s.step();
  return s.integer(0);
}

void ResultsDb::end_run(std::int64_t run_id, const std::string& status, const std::string& error) {
  Statement s(db_,
              "UPDATE runs SET status = ?, error = NULLIF(?, ''), "
              "finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE run_id = ?");
  s.bind(1, status).bind(2, error).bind(3, run_id);
  s.step();
}

namespace {
constexpr const char* kRunQuery = R"sql(
SELECT run_id, name, seed, status, COALESCE(started_at, ''), COALESCE(finished_at, ''), COALESCE(error, ''), config,
       test_accuracy, bytes_total, sim_time, wall_seconds, rounds
FROM run_summary)sql";

ResultsDb::RunRow read_run(Statement& s) {
  ResultsDb::RunRow r;
  r.run_id = s.integer(0);
  r.name = s.text(1);
  r.seed = s.integer(2);
  r.status = s.text(3);
  r.started_at = s.text(4);
  r.finished_at = s.text(5);
  r.error = s.text(6);
  r.config = s.text(7);
  r.test_accuracy = s.optional_real(8);
  r.bytes_total = s.optional_real(9);
  r.sim_time = s.optional_real(10);
  r.wall_seconds = s.optional_real(11);
  r.rounds = s.integer(12);
  return r;
}
}  // namespace

std::vector<ResultsDb::RunRow> ResultsDb::runs() {
  Statement s(db_, (std::string(kRunQuery) + " ORDER BY run_id").c_str());
  std::vector<RunRow> out;
  while (s.step()) out.push_back(read_run(s));
  return out;
}

std::optional<ResultsDb::RunRow> ResultsDb::run(std::int64_t run_id) {
  Statement s(db_, (std::string(kRunQuery) + " WHERE run_id = ?").c_str());
  s.bind(1, run_id);
  if (!s.step()) return std::nullopt;
  return read_run(s);
}

std::vector<std::pair<std::string, double>> ResultsDb::final_metrics(std::int64_t run_id) {
  Statement s(db_, "SELECT name, value FROM final_metrics WHERE run_id = ? ORDER BY name");
  s.bind(1, run_id);
  std::vector<std::pair<std::string, double>> out;
  while (s.step()) out.emplace_back(s.text(0), s.null(1) ? std::nan("") : s.real(1));
  return out;
}

void ResultsDb::export_csv(std::int64_t run_id, std::ostream& out) {
  Statement s(db_, "SELECT round, sim_time, node, name, value FROM metrics WHERE run_id = ? ORDER BY rowid");
  s.bind(1, run_id);
  out << "round,sim_time,node,name,value\n";
  const auto number = [&out](double v) {  // shortest text that reads back to the same double
    char buf[32];
    out.write(buf, std::to_chars(buf, buf + sizeof buf, v).ptr - buf);
  };
  while (s.step()) {
    out << s.integer(0) << ',';
    number(s.real(1));
    out << ',';
    if (!s.null(2)) out << s.integer(2);
    out << ',' << s.text(3) << ',';
    if (!s.null(4)) number(s.real(4));
    out << '\n';
  }
}

RunWriter::RunWriter(ResultsDb& db, std::int64_t run_id) : db_(db), run_id_(run_id) {
  check(db.handle(),
        sqlite3_prepare_v2(db.handle(), "INSERT INTO metrics(run_id, round, sim_time, node, name, value) VALUES(?,?,?,?,?,?)",
                           -1, &insert_metric_, nullptr),
        "preparing the metrics insert");
  check(db.handle(),
        sqlite3_prepare_v2(db.handle(), "INSERT INTO traffic(run_id, round, src, dst, bytes, messages) VALUES(?,?,?,?,?,?)",
                           -1, &insert_traffic_, nullptr),
        "preparing the traffic insert");
}

RunWriter::~RunWriter() {
  sqlite3_finalize(insert_metric_);
  sqlite3_finalize(insert_traffic_);
}

void RunWriter::metric(int round, SimTime time, NodeId node, std::string_view name, double value) {
  metrics_.push_back({round, to_seconds(time), node, std::string(name), value});
}

void RunWriter::traffic(int round, NodeId src, NodeId dst, std::int64_t bytes, std::int64_t messages) {
  traffic_.push_back({round, src, dst, bytes, messages});
}

void RunWriter::end_round(int) {
  sqlite3* db = db_.handle();
  db_.exec("BEGIN IMMEDIATE");
  try {
    for (const auto& m : metrics_) {
      sqlite3_reset(insert_metric_);
      sqlite3_bind_int64(insert_metric_, 1, run_id_);
      sqlite3_bind_int(insert_metric_, 2, m.round);
      sqlite3_bind_double(insert_metric_, 3, m.sim_time);
      if (m.node == kNoNode) sqlite3_bind_null(insert_metric_, 4);
      else sqlite3_bind_int(insert_metric_, 4, m.node);
      sqlite3_bind_text(insert_metric_, 5, m.name.c_str(), static_cast<int>(m.name.size()), SQLITE_STATIC);
      if (std::isnan(m.value)) sqlite3_bind_null(insert_metric_, 6);  // SQLite has no NaN
      else sqlite3_bind_double(insert_metric_, 6, m.value);
      check(db, sqlite3_step(insert_metric_), "writing a metric");
    }
    for (const auto& t : traffic_) {
      sqlite3_reset(insert_traffic_);
      sqlite3_bind_int64(insert_traffic_, 1, run_id_);
      sqlite3_bind_int(insert_traffic_, 2, t.round);
      sqlite3_bind_int(insert_traffic_, 3, t.src);
      sqlite3_bind_int(insert_traffic_, 4, t.dst);
      sqlite3_bind_int64(insert_traffic_, 5, t.bytes);
      sqlite3_bind_int64(insert_traffic_, 6, t.messages);
      check(db, sqlite3_step(insert_traffic_), "writing traffic");
    }
    db_.exec("COMMIT");
  } catch (...) {
    db_.exec("ROLLBACK");
    throw;
  }
  metrics_.clear();
  traffic_.clear();
}

}  // namespace starling
