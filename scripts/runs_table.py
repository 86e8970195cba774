#!/usr/bin/python3
"""Markdown table of the finished runs in a Starling results database (standard library only).

usage: scripts/runs_table.py DB [NAME ...]    # only the named runs (latest of each name), in that order
"""
import sys

from starling_db import open_db


def latest_runs(con, names):
    if names:
        rows = []
        for name in names:
            row = con.execute("SELECT run_id FROM runs WHERE name = ? AND status = 'finished' "
                              "ORDER BY run_id DESC LIMIT 1", (name,)).fetchone()
            if row is None:
                sys.exit(f"error: no finished run named '{name}' in the database")
            rows.append(row[0])
        return rows
    return [r[0] for r in con.execute("SELECT run_id FROM runs WHERE status = 'finished' ORDER BY run_id")]


def final(con, run_id, metric):
    row = con.execute("SELECT value, round, sim_time FROM metrics WHERE run_id = ? AND node IS NULL AND name = ? "
                      "ORDER BY round DESC LIMIT 1", (run_id, metric)).fetchone()
    return row


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    con = open_db(argv[1])
    print("| run | config | rounds | final test accuracy | best test accuracy | bytes on the wire | virtual time (s) | wall time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for run_id in latest_runs(con, argv[2:]):
        name = con.execute("SELECT name FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        acc, rounds, sim_time = final(con, run_id, "test_accuracy")
        best = con.execute("SELECT MAX(value) FROM metrics WHERE run_id = ? AND name = 'test_accuracy'",
                           (run_id,)).fetchone()[0]
        total_bytes = final(con, run_id, "bytes_total")[0]
        wall = final(con, run_id, "wall_seconds")[0]
        print(f"| {run_id} | {name} | {rounds} | {acc:.4f} | {best:.4f} | {total_bytes / 1e6:,.1f} MB | "
              f"{sim_time:,.1f} | {wall:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
