#!/usr/bin/python3
"""Table of the runs in a Starling results database.

usage: scripts/runs.py DB [--name GLOB] [--where KEY=VALUE]... [--status STATUS] [--sweep NAME]

  --name GLOB        runs whose name matches (shell-style: quick*)
  --where KEY=VALUE  runs whose resolved config has KEY (a key path, e.g. train.lr) equal to VALUE
  --status STATUS    running | finished | failed | interrupted
  --sweep NAME       runs of one sweep
"""
import fnmatch
import sys

from starling_db import Parser, UsageError, main_wrapper, open_db, print_table, sweep_params


def main(argv):
    p = Parser(prog="runs.py", description="Table of the runs in a Starling results database.")
    p.add_argument("db")
    p.add_argument("--name", help="shell-style glob on the run name")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="config key path equal to value (repeatable)")
    p.add_argument("--status", choices=["running", "finished", "failed", "interrupted"])
    p.add_argument("--sweep")
    a = p.parse_args(argv)
    con = open_db(a.db)
    conditions = []
    for w in a.where:
        if "=" not in w:
            raise UsageError(f"--where: '{w}' must look like key.path=value")
        conditions.append(w.split("=", 1))
    rows = []
    for (run_id, name, status, sweep, seed, protocol, model, clients, rounds, acc, total_bytes, sim_time,
         wall) in con.execute("SELECT run_id, name, status, sweep, seed, protocol, model, clients, rounds, "
                              "test_accuracy, bytes_total, sim_time, wall_seconds FROM run_summary ORDER BY run_id"):
        if a.name and not fnmatch.fnmatch(name, a.name):
            continue
        if a.status and status != a.status:
            continue
        if a.sweep and sweep != a.sweep:
            continue
        config = dict(con.execute("SELECT key, value FROM run_config WHERE run_id = ?", (run_id,)).fetchall())
        if any(config.get(k) != v for k, v in conditions):
            continue
        point = " ".join(f"{k}={v}" for k, v in sweep_params(con, run_id))
        rows.append([run_id, name, status, sweep or "", point, seed, protocol, model, clients, rounds, acc,
                     None if total_bytes is None else total_bytes / 1e6, sim_time, wall])
    print_table(["run", "name", "status", "sweep", "point", "seed", "protocol", "model", "clients", "rounds",
                 "test_accuracy", "MB", "sim_s", "wall_s"], rows)
    if not rows:
        print("(no runs match)")
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
