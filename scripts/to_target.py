#!/usr/bin/python3
"""Rounds, bytes and virtual seconds each run needed to reach a target value of a metric.

usage: scripts/to_target.py DB [--metric test_accuracy] --target 0.8 [--below] [--runs 3,4] [--sweep NAME]

  --below   the target is reached when the metric falls to it or below (for losses)
"""
import sys

from starling_db import (Parser, UsageError, check_metric, check_runs_exist, main_wrapper, open_db, parse_run_ids,
                         print_table, run_label)


def main(argv):
    p = Parser(prog="to_target.py", description="Cost of reaching a target value of a metric.")
    p.add_argument("db")
    p.add_argument("--metric", default="test_accuracy")
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--below", action="store_true", help="reached when the metric is <= target (losses)")
    p.add_argument("--runs", help="run ids: 3,4,5 or 3-5 (default: all)")
    p.add_argument("--sweep", help="only the runs of this sweep")
    a = p.parse_args(argv)
    con = open_db(a.db)
    if a.runs:
        run_ids = parse_run_ids(a.runs)
        check_runs_exist(con, run_ids)
    elif a.sweep:
        run_ids = [r[0] for r in con.execute("SELECT run_id FROM sweep_runs WHERE sweep = ? ORDER BY run_id", (a.sweep,))]
        if not run_ids:
            raise UsageError(f"--sweep: no runs of a sweep named '{a.sweep}'")
    else:
        run_ids = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id")]
    if not run_ids:
        raise UsageError("the database holds no runs")
    check_metric(con, run_ids, a.metric)
    op, best = ("<=", "MIN") if a.below else (">=", "MAX")
    rows = []
    for r in run_ids:
        hit = con.execute(f"SELECT round, bytes_total, sim_time FROM metric_progress WHERE run_id = ? AND name = ? "
                          f"AND value {op} ? ORDER BY round LIMIT 1", (r, a.metric, a.target)).fetchone()
        best_value = con.execute(f"SELECT {best}(value) FROM metrics WHERE run_id = ? AND node IS NULL AND name = ?",
                                 (r, a.metric)).fetchone()[0]
        if hit:
            rows.append([run_label(con, r), hit[0], None if hit[1] is None else hit[1] / 1e6, hit[2], best_value])
        else:
            rows.append([run_label(con, r), "never", "never", "never", best_value])
    print(f"{a.metric} {op} {a.target}")
    print_table(["run", "rounds", "MB on the wire", "virtual seconds", "best " + a.metric], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
