// store/: the SQLite results database.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "store/results_db.h"
#include "db_reader.h"
#include "test_util.h"

namespace starling {
namespace {

using test::TempDir;

using Reader = test::DbReader;

constexpr SimTime kSecond = kNanosPerSecond;

TEST(ResultsDb, SchemaRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("nested/folder/results.db");  // folders are created
  ResultsDb db(path);
  const auto id = db.begin_run("demo", "name: demo\nrounds: 2\n", 42, "9.9.9");
  EXPECT_EQ(id, 1);
  {
    RunWriter w(db, id);
    w.metric(1, kSecond / 2, kNoNode, "test_accuracy", 0.25);
    w.metric(1, kSecond / 2, 3, "node_loss", std::nan(""));
    w.metric(1, kSecond / 2, kNoNode, "bytes_total", 100);
    w.traffic(1, 0, 3, 60, 1);
    w.traffic(1, 3, 0, 40, 1);
    w.end_round(1);
    w.metric(2, 3 * kSecond / 2, kNoNode, "test_accuracy", 0.75);
    w.metric(2, 3 * kSecond / 2, kNoNode, "bytes_total", 300);
    w.metric(2, 3 * kSecond / 2, kNoNode, "train_loss", std::nan(""));
    w.traffic(2, 0, 3, 200, 2);
    w.end_round(2);
  }
  db.end_run(id, "finished");

  Reader r(path);
  EXPECT_EQ(r.rows("SELECT round, sim_time, node, name, value FROM metrics ORDER BY rowid"),
            (std::vector<std::vector<std::string>>{{"1", "0.5", "NULL", "test_accuracy", "0.25"},
                                                   {"1", "0.5", "3", "node_loss", "NULL"},
                                                   {"1", "0.5", "NULL", "bytes_total", "100.0"},
                                                   {"2", "1.5", "NULL", "test_accuracy", "0.75"},
                                                   {"2", "1.5", "NULL", "bytes_total", "300.0"},
                                                   {"2", "1.5", "NULL", "train_loss", "NULL"}}));
  EXPECT_EQ(r.rows("SELECT run_id, round, src, dst, bytes, messages FROM traffic ORDER BY rowid"),
            (std::vector<std::vector<std::string>>{
                {"1", "1", "0", "3", "60", "1"}, {"1", "1", "3", "0", "40", "1"}, {"1", "2", "0", "3", "200", "2"}}));
  EXPECT_EQ(r.rows("SELECT name, config, seed, status, version, error FROM runs"),
            (std::vector<std::vector<std::string>>{{"demo", "name: demo\nrounds: 2\n", "42", "finished", "9.9.9", "NULL"}}));

  const auto runs = db.runs();
  ASSERT_EQ(runs.size(), 1u);
  const auto& row = runs[0];
  EXPECT_EQ(row.run_id, id);
  EXPECT_EQ(row.name, "demo");
  EXPECT_EQ(row.status, "finished");
  EXPECT_EQ(row.seed, 42);
  EXPECT_EQ(row.rounds, 2);
  EXPECT_EQ(row.config, "name: demo\nrounds: 2\n");
  EXPECT_FALSE(row.started_at.empty());
  EXPECT_FALSE(row.finished_at.empty());
  EXPECT_TRUE(row.error.empty());
  ASSERT_TRUE(row.test_accuracy.has_value());
  EXPECT_DOUBLE_EQ(*row.test_accuracy, 0.75);
  ASSERT_TRUE(row.bytes_total.has_value());
  EXPECT_DOUBLE_EQ(*row.bytes_total, 300);
  ASSERT_TRUE(row.sim_time.has_value());
  EXPECT_DOUBLE_EQ(*row.sim_time, 1.5);
  EXPECT_FALSE(row.wall_seconds.has_value());

  const auto one = db.run(id);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->name, "demo");
  EXPECT_EQ(one->rounds, 2);
  EXPECT_FALSE(db.run(999).has_value());

  const auto fm = db.final_metrics(id);
  ASSERT_EQ(fm.size(), 3u);  // global metrics only, by name, at their last round
  EXPECT_EQ(fm[0].first, "bytes_total");
  EXPECT_EQ(fm[0].second, 300);
  EXPECT_EQ(fm[1].first, "test_accuracy");
  EXPECT_EQ(fm[1].second, 0.75);
  EXPECT_EQ(fm[2].first, "train_loss");
  EXPECT_TRUE(std::isnan(fm[2].second));

  std::ostringstream csv;
  db.export_csv(id, csv);
  EXPECT_EQ(csv.str(),
            "round,sim_time,node,name,value\n"
            "1,0.5,,test_accuracy,0.25\n"
            "1,0.5,3,node_loss,\n"
            "1,0.5,,bytes_total,100\n"
            "2,1.5,,test_accuracy,0.75\n"
            "2,1.5,,bytes_total,300\n"
            "2,1.5,,train_loss,\n");
}

TEST(ResultsDb, VersionAndWalMode) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  ResultsDb db(path);
  Reader r(path);
  EXPECT_EQ(r.scalar("PRAGMA user_version"), std::to_string(kSchemaVersion));
  EXPECT_EQ(r.scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(r.scalar("PRAGMA integrity_check"), "ok");
  for (const char* table : {"runs", "metrics", "traffic"})
    EXPECT_EQ(r.scalar(std::string("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
              "1")
        << table;
}

TEST(ResultsDb, RowsBecomeVisibleOnlyAtEndRound) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  ResultsDb db(path);
  const auto id = db.begin_run("x", "{}", 1, "v");
  Reader r(path);
  EXPECT_EQ(r.scalar("SELECT status FROM runs"), "running");
  RunWriter w(db, id);
  w.metric(1, 0, kNoNode, "a", 1.0);
  w.traffic(1, 0, 1, 10, 1);
  EXPECT_EQ(r.scalar("SELECT COUNT(*) FROM metrics"), "0");
  EXPECT_EQ(r.scalar("SELECT COUNT(*) FROM traffic"), "0");
  w.end_round(1);
  EXPECT_EQ(r.scalar("SELECT COUNT(*) FROM metrics"), "1");
  EXPECT_EQ(r.scalar("SELECT COUNT(*) FROM traffic"), "1");
  w.end_round(2);  // an empty round commits nothing new, and nothing twice
  EXPECT_EQ(r.scalar("SELECT COUNT(*) FROM metrics"), "1");
}

TEST(ResultsDb, ReopeningKeepsRunsAndAddsNewOnes) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  {
    ResultsDb db(path);
    const auto id = db.begin_run("first", "{}", 1, "v");
    RunWriter w(db, id);
    w.metric(1, 0, kNoNode, "test_accuracy", 0.5);
    w.end_round(1);
    db.end_run(id, "failed", "boom: out of cheese");
  }
  ResultsDb db(path);
  const auto id2 = db.begin_run("second", "{}", 2, "v");
  EXPECT_EQ(id2, 2);
  db.end_run(id2, "interrupted");
  const auto runs = db.runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].name, "first");
  EXPECT_EQ(runs[0].status, "failed");
  EXPECT_EQ(runs[0].error, "boom: out of cheese");
  EXPECT_EQ(runs[0].rounds, 1);
  EXPECT_EQ(runs[1].name, "second");
  EXPECT_EQ(runs[1].status, "interrupted");
  EXPECT_EQ(runs[1].rounds, 0);
  EXPECT_FALSE(runs[1].test_accuracy.has_value());
  EXPECT_TRUE(db.final_metrics(id2).empty());
}

TEST(ResultsDb, RejectsBadStatus) {
  TempDir dir;
  ResultsDb db(dir.file("r.db"));
  const auto id = db.begin_run("x", "{}", 1, "v");
  EXPECT_THROW(db.end_run(id, "exploded"), Error);
  EXPECT_EQ(db.run(id)->status, "running");
}

TEST(ResultsDb, NewerSchemaVersionIsRefusedNamingTheFile) {
  TempDir dir;
  const std::string path = dir.file("future.db");
  {
    ResultsDb db(path);
    db.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  }
  try {
    ResultsDb db(path);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(ResultsDb, UnopenablePathNamesTheFile) {
  TempDir dir;
  dir.write("not_a_folder", "x");
  const std::string path = dir.file("not_a_folder/r.db");
  try {
    ResultsDb db(path);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  dir.write("garbage.db", std::string(4096, 'g'));
  EXPECT_THROW(ResultsDb(dir.file("garbage.db")), Error);
}


TEST(ResultsDb, SweepMetadataAndViews) {
  TempDir dir;
  const std::string path = dir.file("views.db");
  ResultsDb db(path);
  RunMeta meta{{{"train.lr", "0.1"}, {"model.kind", "logreg"}, {"data.clients", "4"}}, "lr_sweep", 1,
               {{"train.lr", "0.1"}}};
  const auto id = db.begin_run("swept", "{}", 9, "v", meta);
  {
    RunWriter w(db, id);
    for (int r = 1; r <= 3; ++r) {
      w.metric(r, r * kNanosPerSecond, kNoNode, "bytes_total", 100.0 * r);
      w.metric(r, r * kNanosPerSecond, kNoNode, "test_accuracy", 0.5 + 0.1 * r);
      w.end_round(r);
    }
  }
  db.end_run(id, "finished");
  test::DbReader r(path);
  EXPECT_EQ(r.scalar("SELECT sweep || ':' || repeat FROM sweep_runs WHERE run_id = " + std::to_string(id)), "lr_sweep:1");
  EXPECT_EQ(r.scalar("SELECT value FROM sweep_params WHERE key = 'train.lr'"), "0.1");
  EXPECT_EQ(r.scalar("SELECT model || ',' || clients || ',' || rounds || ',' || test_accuracy || ',' || status "
                     "FROM run_summary"),
            "logreg,4,3,0.8,finished");
  EXPECT_EQ(r.scalar("SELECT value FROM final_metrics WHERE name = 'bytes_total'"), "300.0");
  // Time to target through metric_progress: 0.7 is first reached in round 2, after 200 bytes.
  EXPECT_EQ(r.scalar("SELECT MIN(round) || ',' || MIN(bytes_total) FROM metric_progress "
                     "WHERE name = 'test_accuracy' AND value >= 0.7"),
            "2,200.0");
  EXPECT_EQ(db.last_run_id(), id);
  const auto final = db.final_metrics(id);
  ASSERT_EQ(final.size(), 2u);
  EXPECT_EQ(final[1].first, "test_accuracy");
  EXPECT_DOUBLE_EQ(final[1].second, 0.8);
}

}  // namespace
}  // namespace starling
