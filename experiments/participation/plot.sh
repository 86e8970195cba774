#!/usr/bin/env bash
# The participation table of README.md (block "rounds"): per configuration, the mean clients
# contacted and aggregated per round, late updates, and the virtual time the run took.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db=$(realpath "${1:-$here/results.db}")
/usr/bin/python3 - "$db" "$here/README.md" <<'PY'
import re, sqlite3, statistics, sys
db, readme = sys.argv[1:]
con = sqlite3.connect(db)
groups = {}
for run_id, name in con.execute("SELECT run_id, name FROM runs WHERE status = 'finished' ORDER BY run_id"):
    point = " ".join(f"{k.split('.')[-1]}={v}" for k, v in
                     con.execute("SELECT key, value FROM sweep_params WHERE run_id = ? ORDER BY rowid", (run_id,)))
    groups.setdefault(f"{name} {point}", []).append(run_id)

def per_run(run_id, metric, how):
    rows = [v for (v,) in con.execute("SELECT value FROM metrics WHERE run_id = ? AND name = ? AND node IS NULL",
                                      (run_id, metric))]
    if not rows:
        return None
    return statistics.fmean(rows) if how == "mean" else sum(rows)

def cell(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

lines = ["| configuration | runs | clients contacted / round | updates aggregated / round | late updates | "
         "virtual s for all rounds |", "|---|---|---|---|---|---|"]
for label, runs in groups.items():
    contacted = [per_run(r, "contacted", "mean") for r in runs]
    aggregated = [per_run(r, "participants", "mean") for r in runs]
    late = [per_run(r, "late_updates", "sum") for r in runs]
    seconds = [con.execute("SELECT MAX(sim_time) FROM metrics WHERE run_id = ?", (r,)).fetchone()[0] for r in runs]
    lines.append(f"| {label} | {len(runs)} | {cell(contacted, 1)} | {cell(aggregated, 1)} | {cell(late, 0)} | "
                 f"{cell(seconds, 1)} |")
text = open(readme).read()
start, end = "<!-- rounds:start -->", "<!-- rounds:end -->"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: start + "\n" + "\n".join(lines) + "\n" + end, text,
              flags=re.S)
open(readme, "w").write(text)
PY
