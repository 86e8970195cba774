#include "sim/availability.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace starling {

MarkovAvailability::MarkovAvailability(std::uint64_t seed, int nodes, NodeId first, double mean_online_s,
                                       double mean_offline_s)
    : first_(first), mean_online_s_(mean_online_s), mean_offline_s_(mean_offline_s) {
  for (NodeId i = first; i < nodes; ++i) {
    Walk w{Rng(seed, i, Purpose::kAvailability), true, {}};
    w.starts_online = w.rng.uniform() < mean_online_s / (mean_online_s + mean_offline_s);
    walks_.push_back(std::move(w));
  }
}

const MarkovAvailability::Walk* MarkovAvailability::walk(NodeId node, SimTime t) const {
  if (node < first_ || node - first_ >= static_cast<NodeId>(walks_.size())) return nullptr;
  Walk& w = walks_[static_cast<std::size_t>(node - first_)];
  // Exponential periods are memoryless, so the first period of the stationary start is again
  // exponential with the state's mean.
  while (w.switches.empty() || w.switches.back() <= t) {
    const bool online_now = w.starts_online == (w.switches.size() % 2 == 0);
    const double mean = online_now ? mean_online_s_ : mean_offline_s_;
    const SimTime last = w.switches.empty() ? 0 : w.switches.back();
    w.switches.push_back(last + std::max<SimTime>(1, from_seconds(w.rng.exponential(1.0 / mean))));
  }
  return &w;
}

bool MarkovAvailability::online(NodeId node, SimTime t) const {
  const Walk* w = walk(node, t);
  if (!w) return true;
  const auto flips = std::upper_bound(w->switches.begin(), w->switches.end(), t) - w->switches.begin();
  return w->starts_online == (flips % 2 == 0);
}

bool MarkovAvailability::online_throughout(NodeId node, SimTime from, SimTime to) const {
  const Walk* w = walk(node, std::max(from, to));
  if (!w) return true;
  const auto a = std::upper_bound(w->switches.begin(), w->switches.end(), from);
  const auto b = std::upper_bound(w->switches.begin(), w->switches.end(), to);
  return a == b && w->starts_online == ((a - w->switches.begin()) % 2 == 0);
}

namespace {
std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
}  // namespace

TraceAvailability::TraceAvailability(const std::string& path, int nodes, NodeId first, const std::string& key)
    : first_(first), intervals_(static_cast<std::size_t>(std::max(0, nodes - first))) {
  for (const CsvRow& row : read_numeric_csv(path, {"node", "start", "end"}, key)) {
    const auto where = path + ":" + std::to_string(row.line) + ": ";
    const double node = row.values[0], start = row.values[1], end = row.values[2];
    if (node != std::floor(node) || node < first || node >= nodes)
      throw ConfigError(key, where + "node " + number_text(node) + " is not a client node; client nodes are " +
                                 std::to_string(first) + " to " + std::to_string(nodes - 1) +
                                 " (ids as in the results database)");
    if (start < 0 || end <= start)
      throw ConfigError(key, where + "interval [" + number_text(start) + ", " + number_text(end) +
                                 ") must have 0 <= start < end (seconds)");
    intervals_[static_cast<std::size_t>(node) - static_cast<std::size_t>(first)].push_back(
        {from_seconds(start), from_seconds(end)});
  }
  for (auto& list : intervals_) {  // sort and merge overlapping or touching intervals
    std::sort(list.begin(), list.end(), [](const Interval& a, const Interval& b) { return a.start < b.start; });
    std::vector<Interval> merged;
    for (const auto& i : list)
      if (!merged.empty() && i.start <= merged.back().end) merged.back().end = std::max(merged.back().end, i.end);
      else merged.push_back(i);
    list = std::move(merged);
  }
}

const TraceAvailability::Interval* TraceAvailability::containing(NodeId node, SimTime t) const {
  const auto& list = intervals_[static_cast<std::size_t>(node - first_)];
  auto it = std::upper_bound(list.begin(), list.end(), t, [](SimTime v, const Interval& i) { return v < i.start; });
  if (it == list.begin()) return nullptr;
  --it;
  return t < it->end ? &*it : nullptr;
}

bool TraceAvailability::online(NodeId node, SimTime t) const {
  if (node < first_ || node - first_ >= static_cast<NodeId>(intervals_.size())) return true;
  return containing(node, t) != nullptr;
}

bool TraceAvailability::online_throughout(NodeId node, SimTime from, SimTime to) const {
  if (node < first_ || node - first_ >= static_cast<NodeId>(intervals_.size())) return true;
  const Interval* i = containing(node, from);
  return i && to < i->end;
}

std::vector<CsvRow> read_numeric_csv(const std::string& path, const std::vector<std::string>& columns,
                                     const std::string& key) {
  std::ifstream in(path);
  if (!in) throw ConfigError(key, path + ": cannot open the file");
  std::string header;
  for (const auto& c : columns) header += (header.empty() ? "" : ",") + c;
  std::vector<CsvRow> rows;
  std::string line;
  bool first_content = true;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string f; std::getline(split, f, ',');) {
      const auto a = f.find_first_not_of(" \t"), b = f.find_last_not_of(" \t");
      fields.push_back(a == std::string::npos ? "" : f.substr(a, b - a + 1));
    }
    if (fields.empty() || (fields.size() == 1 && fields[0].empty()) || fields[0].starts_with("#")) continue;
    const bool is_header = first_content && fields == columns;
    first_content = false;
    if (is_header) continue;
    const auto where = path + ":" + std::to_string(number) + ": ";
    if (fields.size() != columns.size())
      throw ConfigError(key, where + "expected " + std::to_string(columns.size()) + " comma-separated fields (" + header +
                                 "), found " + std::to_string(fields.size()));
    CsvRow row{number, {}};
    for (std::size_t i = 0; i < fields.size(); ++i) {
      double v = 0.0;
      std::size_t used = 0;
      try {
        v = std::stod(fields[i], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (fields[i].empty() || used != fields[i].size() || !std::isfinite(v))
        throw ConfigError(key, where + columns[i] + " \"" + fields[i] + "\" is not a number");
      row.values.push_back(v);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace starling
