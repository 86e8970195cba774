// The simulator's availability models (nodes/availability.h) and the CSV files they and the
// client profiles read.
#pragma once
#include <string>
#include <vector>

#include "core/rng.h"
#include "nodes/availability.h"

namespace starling {

// Nodes [first, nodes) alternate between online and offline periods of exponential length with
// means `mean_online_s` and `mean_offline_s` (a two-state continuous-time Markov chain), each on
// its own stream (seed, node, kAvailability), starting in the stationary law: online with
// probability on / (on + off). Other nodes are always online. Periods are drawn lazily as the
// simulation asks about later times; the answers depend only on (seed, node), not on the
// order of the questions. Not thread-safe (the event loop asks).
class MarkovAvailability final : public Availability {
 public:
  MarkovAvailability(std::uint64_t seed, int nodes, NodeId first, double mean_online_s, double mean_offline_s);
  bool online(NodeId node, SimTime t) const override;
  bool online_throughout(NodeId node, SimTime from, SimTime to) const override;

 private:
  struct Walk {
    Rng rng;
    bool starts_online = true;
    std::vector<SimTime> switches;  // ascending; the state flips at each
  };
  // Switches of `node`, drawn at least past `t`; null for an always-online node.
  const Walk* walk(NodeId node, SimTime t) const;

  NodeId first_;
  double mean_online_s_, mean_offline_s_;
  mutable std::vector<Walk> walks_;  // index node - first_
};

// Online intervals [start, end) in seconds per node, from a CSV file of `node,start,end` lines
// (node ids as in the results database). Overlapping or touching intervals merge; a node in
// [first, nodes) with no line is never online; nodes before `first` are always online.
class TraceAvailability final : public Availability {
 public:
  // Throws ConfigError naming `key`, the file and the line of a bad entry.
  TraceAvailability(const std::string& path, int nodes, NodeId first, const std::string& key);
  bool online(NodeId node, SimTime t) const override;
  bool online_throughout(NodeId node, SimTime from, SimTime to) const override;

 private:
  struct Interval {
    SimTime start, end;
  };
  const Interval* containing(NodeId node, SimTime t) const;  // null: offline at t
  NodeId first_;
  std::vector<std::vector<Interval>> intervals_;  // index node - first_, sorted, disjoint
};

struct CsvRow {
  int line = 0;
  std::vector<double> values;
};
// The rows of a numeric CSV file with exactly the given columns. Blank lines, lines starting with
// '#', and a header line naming the columns are skipped. Errors (missing file, wrong field count,
// a field that is not a finite number) throw ConfigError(key, "FILE:LINE: ...").
std::vector<CsvRow> read_numeric_csv(const std::string& path, const std::vector<std::string>& columns,
                                     const std::string& key);

}  // namespace starling
