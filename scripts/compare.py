#!/usr/bin/python3
"""Compare a metric across runs: an aligned table by round, and optionally a plot and a CSV.

usage: scripts/compare.py DB (--runs 3,4,5 | --name NAME) [--metric test_accuracy]
                          [--x round|bytes_total|uplink_bytes|sim_time] [--logx] [--title T] [--png out.png] [--csv out.csv]
"""
import sys

from starling_db import (Parser, UsageError, check_metric, check_runs_exist, main_wrapper, open_db, parse_run_ids,
                         print_table, pyplot, run_label, write_csv)

X_LABELS = {"round": "round", "bytes_total": "bytes on the wire (MB)", "sim_time": "virtual time (s)",
            "uplink_bytes": "bytes into node 0, the server (MB)"}


def series(con, run_id, metric):
    """[(round, sim_time, bytes_total, value, uplink_bytes)] of one run's global metric; uplink_bytes
    is the cumulative traffic into node 0 (a server's uplink) up to that round."""
    rows = con.execute("SELECT round, sim_time, bytes_total, value FROM metric_progress "
                       "WHERE run_id = ? AND name = ? ORDER BY round", (run_id, metric)).fetchall()
    per_round = dict(con.execute("SELECT round, SUM(bytes) FROM traffic WHERE run_id = ? AND dst = 0 GROUP BY round",
                                 (run_id,)).fetchall())
    out, total, rounds = [], 0, sorted(per_round)
    at = 0
    for rnd, sim_time, bytes_total, value in rows:
        while at < len(rounds) and rounds[at] <= rnd:
            total += per_round[rounds[at]]
            at += 1
        out.append((rnd, sim_time, bytes_total, value, total))
    return out


def main(argv):
    p = Parser(prog="compare.py", description="Compare a metric across runs.")
    p.add_argument("db")
    p.add_argument("--runs", help="run ids: 3,4,5 or 3-5")
    p.add_argument("--name", help="instead of --runs: every finished run of this name (e.g. a sweep's)")
    p.add_argument("--metric", default="test_accuracy")
    p.add_argument("--x", default="round", choices=sorted(X_LABELS))
    p.add_argument("--logx", action="store_true", help="logarithmic x axis (bytes spanning decades)")
    p.add_argument("--title", help="plot title")
    p.add_argument("--png", help="write a plot to this file")
    p.add_argument("--csv", help="write the aligned table to this file")
    a = p.parse_args(argv)
    con = open_db(a.db)
    if (a.runs is None) == (a.name is None):
        raise UsageError("give either --runs or --name")
    if a.name is not None:
        run_ids = [r for (r,) in con.execute("SELECT run_id FROM runs WHERE name = ? AND status = 'finished' "
                                             "ORDER BY run_id", (a.name,))]
        if not run_ids:
            raise UsageError(f"--name: no finished run named '{a.name}' in {a.db}")
    else:
        run_ids = parse_run_ids(a.runs)
    check_runs_exist(con, run_ids)
    check_metric(con, run_ids, a.metric)

    data = {r: series(con, r, a.metric) for r in run_ids}
    labels = {r: run_label(con, r) for r in run_ids}
    rounds = sorted({row[0] for rows in data.values() for row in rows})
    headers = ["round"]
    for r in run_ids:
        if a.x != "round":
            headers.append(f"run {r} {a.x}")
        headers.append(f"run {r} {a.metric}")
    by_round = {r: {row[0]: row for row in rows} for r, rows in data.items()}
    table = []
    for rnd in rounds:
        line = [rnd]
        for r in run_ids:
            row = by_round[r].get(rnd)
            if a.x == "bytes_total":
                line.append(None if row is None or row[2] is None else row[2] / 1e6)
            elif a.x == "uplink_bytes":
                line.append(None if row is None else row[4] / 1e6)
            elif a.x == "sim_time":
                line.append(None if row is None else row[1])
            line.append(None if row is None else row[3])
        table.append(line)
    for r in run_ids:
        print(f"run {r}: {labels[r]}")
    print()
    print_table(headers, table)
    if a.csv:
        write_csv(a.csv, headers, table)
    if a.png:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 4.2))
        column = {"round": 0, "sim_time": 1, "bytes_total": 2, "uplink_bytes": 4}[a.x]
        in_mb = a.x in ("bytes_total", "uplink_bytes")
        colours = plt.get_cmap("tab20").colors
        for i, r in enumerate(run_ids):
            points = [(row[column] / 1e6 if in_mb else row[column], row[3]) for row in data[r]
                      if row[column] is not None and row[3] is not None and (not a.logx or row[column] > 0)]
            ax.plot([x for x, _ in points], [y for _, y in points], label=labels[r], linewidth=1.4,
                    color=colours[i % len(colours)])
        if a.logx:
            ax.set_xscale("log")
        if a.title:
            ax.set_title(a.title)
        ax.set_xlabel(X_LABELS[a.x])
        ax.set_ylabel(a.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        fig.tight_layout()
        fig.savefig(a.png, dpi=120, bbox_inches="tight")
        print(f"\nwrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
