#!/usr/bin/python3
"""A sweep as a pivot table: the final (or best) value of a metric for every point of the grid,
mean ± standard deviation over the sweep's repeats (seeds).

usage: scripts/sweep_table.py DB --sweep NAME [--metric test_accuracy] [--stat final|best|tail]
                              [--tail 10] [--markdown] [--csv out.csv]

With two swept keys the first gives the rows and the second the columns; otherwise one row per point.
"""
import statistics
import sys

from starling_db import Parser, UsageError, main_wrapper, open_db, print_table, write_csv


def summary(values):
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f} (n={len(values)})"


def main(argv):
    p = Parser(prog="sweep_table.py", description="Pivot table of a sweep, mean ± std over seeds.")
    p.add_argument("db")
    p.add_argument("--sweep", required=True)
    p.add_argument("--metric", default="test_accuracy")
    p.add_argument("--stat", default="final", choices=["final", "best", "tail"],
                   help="final: the last recorded value; best: the maximum over rounds; "
                        "tail: the mean of the last --tail recorded values (smooths oscillating curves)")
    p.add_argument("--tail", type=int, default=10, help="values averaged by --stat tail (default 10)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for READMEs)")
    p.add_argument("--csv")
    a = p.parse_args(argv)
    if a.tail < 1:
        raise UsageError(f"--tail: must be at least 1, got {a.tail}")
    con = open_db(a.db)
    runs = con.execute("SELECT s.run_id, r.status FROM sweep_runs s JOIN runs r ON r.run_id = s.run_id "
                       "WHERE s.sweep = ? ORDER BY s.run_id", (a.sweep,)).fetchall()
    if not runs:
        known = [r[0] for r in con.execute("SELECT DISTINCT sweep FROM sweep_runs ORDER BY sweep")]
        raise UsageError(f"--sweep: no sweep named '{a.sweep}'; known: {', '.join(known) or '(none)'}")
    keys, points, skipped = [], {}, 0
    for run_id, status in runs:
        params = con.execute("SELECT key, value FROM sweep_params WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        for k, _ in params:
            if k not in keys:
                keys.append(k)
        if status != "finished":
            skipped += 1
            continue
        if a.stat == "final":
            row = con.execute("SELECT value FROM final_metrics WHERE run_id = ? AND name = ?", (run_id, a.metric)).fetchone()
        elif a.stat == "best":
            row = con.execute("SELECT MAX(value) FROM metrics WHERE run_id = ? AND node IS NULL AND name = ?",
                              (run_id, a.metric)).fetchone()
        else:
            row = con.execute("SELECT AVG(value) FROM (SELECT value FROM metrics WHERE run_id = ? AND node IS NULL "
                              "AND name = ? ORDER BY round DESC LIMIT ?)", (run_id, a.metric, a.tail)).fetchone()
        if row is None or row[0] is None:
            raise UsageError(f"--metric: run {run_id} has no '{a.metric}'")
        points.setdefault(tuple(v for _, v in params), []).append(row[0])
    stat = f"mean of the last {a.tail} values of" if a.stat == "tail" else a.stat
    title = (f"sweep {a.sweep}: {stat} {a.metric}, mean ± std over repeats"
             + (f"; {skipped} unfinished run(s) left out" if skipped else ""))
    if not a.markdown:
        print(title)
    if len(keys) == 2:
        row_values = list(dict.fromkeys(p[0] for p in points))
        col_values = list(dict.fromkeys(p[1] for p in points))
        headers = [f"{keys[0]} \\ {keys[1]}"] + col_values
        table = [[rv] + [summary(points.get((rv, cv), [])) for cv in col_values] for rv in row_values]
    else:
        headers = (keys or ["point"]) + [a.metric]
        table = [(list(p) if keys else ["(single point)"]) + [summary(v)] for p, v in points.items()]
    if a.markdown:
        print(f"*{title}*\n")
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in table:
            print("| " + " | ".join(str(c) for c in row) + " |")
    else:
        print_table(headers, table)
    if a.csv:
        write_csv(a.csv, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
