// A plain SQLite connection for tests: an independent view of what a writer committed.
#pragma once
#include <sqlite3.h>

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace starling::test {

class DbReader {
 public:
  explicit DbReader(const std::string& path, int flags = SQLITE_OPEN_READONLY) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("cannot open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~DbReader() { sqlite3_close(db_); }
  DbReader(const DbReader&) = delete;
  DbReader& operator=(const DbReader&) = delete;

  // Every row of `sql`, each column as SQLite's text ("NULL" for NULL).
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string(sqlite3_errmsg(db_)) + " in: " + sql);
    std::vector<std::vector<std::string>> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int c = 0; c < sqlite3_column_count(s); ++c) {
        const auto* t = sqlite3_column_text(s, c);
        row.push_back(sqlite3_column_type(s, c) == SQLITE_NULL ? "NULL" : reinterpret_cast<const char*>(t));
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string(sqlite3_errmsg(db_)) + " in: " + sql);
    return out;
  }
  // Column `col` of every row as a double (NULL reads as NaN), bit-exact.
  std::vector<double> doubles(const std::string& sql, int col = 0) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string(sqlite3_errmsg(db_)) + " in: " + sql);
    std::vector<double> out;
    while (sqlite3_step(s) == SQLITE_ROW)
      out.push_back(sqlite3_column_type(s, col) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                               : sqlite3_column_double(s, col));
    sqlite3_finalize(s);
    return out;
  }
  std::string scalar(const std::string& sql) {
    const auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }
  long long integer(const std::string& sql) { return std::stoll(scalar(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace starling::test
