"""Shared helpers of Starling's result scripts: opening a results database, labelling runs,
printing aligned tables and loading matplotlib. Python 3 standard library only."""
import argparse
import math
import os
import sqlite3
import statistics
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument or input: the script prints it and exits with status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line reason on bad arguments."""

    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def main_wrapper(main):
    """Runs main(argv); a UsageError becomes a clear message and exit status 2."""
    try:
        return main(sys.argv[1:])
    except UsageError as e:
        sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: {e}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. piped into head
        return 0


def open_db(path):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such results database (run `starling run` or `starling sweep` first)")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute("SELECT 1 FROM runs LIMIT 1")
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{path}: not a Starling results database ({e})")
    if version < 2:
        raise UsageError(f"{path}: results database schema version {version}; open it once with a newer "
                         "`starling runs --db {path}` to upgrade it")
    return con


def parse_run_ids(text):
    """'3,4,7-9' -> [3, 4, 7, 8, 9]."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            elif part:
                ids.append(int(part))
        except ValueError:
            raise UsageError(f"--runs: '{part}' is not a run id or a range like 3-5")
    if not ids:
        raise UsageError("--runs: no run ids given")
    return ids


def check_runs_exist(con, run_ids):
    known = {r[0] for r in con.execute("SELECT run_id FROM runs")}
    missing = [r for r in run_ids if r not in known]
    if missing:
        raise UsageError(f"--runs: no run {', '.join(map(str, missing))} in the database (see scripts/runs.py)")


def sweep_params(con, run_id):
    return con.execute("SELECT key, value FROM sweep_params WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()


def run_label(con, run_id):
    """'run 3 quickstart' plus the swept values and seed when the run belongs to a sweep."""
    name, seed = con.execute("SELECT name, seed FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    params = sweep_params(con, run_id)
    label = f"run {run_id} {name}"
    if params:
        label += " " + " ".join(f"{k.split('.')[-1]}={v}" for k, v in params) + f" seed={seed}"
    return label


def metric_names(con, run_ids):
    marks = ",".join("?" * len(run_ids))
    return [r[0] for r in con.execute(f"SELECT DISTINCT name FROM metrics WHERE node IS NULL AND run_id IN ({marks}) "
                                      "ORDER BY name", run_ids)]


def check_metric(con, run_ids, metric):
    names = metric_names(con, run_ids)
    if metric not in names:
        raise UsageError(f"--metric: '{metric}' was not recorded by these runs; known: {', '.join(names)}")


def fmt(value, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def mean_std(values, digits=4, scale=1.0):
    """'mean ± std' of the values that are not None (times `scale`), '-' if none, the value if one."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def print_table(headers, rows, out=sys.stdout):
    """Aligned plain-text table: text left, numbers right."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(headers))]
    def line(values):
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
    out.write(line(headers).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(line(r).rstrip() + "\n")


def write_csv(path, headers, rows):
    import csv
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        w.writerows(rows)


def pyplot():
    """matplotlib.pyplot with a file-only backend, or a clear error naming the package."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise UsageError("plots need matplotlib: `apt-get install python3-matplotlib` (Debian's python3 is "
                         "/usr/bin/python3); tables work without it")
