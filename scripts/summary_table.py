#!/usr/bin/python3
"""Markdown summary of the runs in a results database, one row per configuration (run name plus
swept values), mean ± std over its repeats: final test accuracy, final mean node accuracy and
consensus distance (decentralized runs), bytes on the wire, and rounds to reach a target.

usage: scripts/summary_table.py DB [--target 0.8] [--metric test_accuracy] [--uplink] [--time]

--uplink adds the MB sent to node 0 in server runs (star topology: the clients' updates), where
uplink compression shows, since the dense model sent down is in "MB on the wire" too; "-" for
decentralized runs. --time adds the virtual seconds at which the run first reached the target
(the simulated clock, e.g. to compare synchronous and asynchronous servers under slow clients).
"""
import statistics
import sys

from starling_db import Parser, main_wrapper, mean_std, open_db, sweep_params


def main(argv):
    p = Parser(prog="summary_table.py", description="Markdown summary of a results database.")
    p.add_argument("db")
    p.add_argument("--metric", default="test_accuracy")
    p.add_argument("--target", type=float, default=0.8)
    p.add_argument("--uplink", action="store_true", help="add a column: MB received by node 0 (the server)")
    p.add_argument("--time", action="store_true", help="add a column: virtual seconds to reach the target")
    a = p.parse_args(argv)
    con = open_db(a.db)
    groups = {}
    for run_id, name in con.execute("SELECT run_id, name FROM runs WHERE status = 'finished' ORDER BY run_id"):
        point = " ".join(f"{k.split('.')[-1]}={v}" for k, v in sweep_params(con, run_id))
        groups.setdefault((name, point), []).append(run_id)

    def final(run_id, metric):
        row = con.execute("SELECT value FROM final_metrics WHERE run_id = ? AND name = ?", (run_id, metric)).fetchone()
        return row[0] if row else None

    print(f"| configuration | runs | final {a.metric} | final node_accuracy_mean | final consensus_distance | "
          f"MB on the wire |{' uplink MB |' if a.uplink else ''} rounds to {a.metric} >= {a.target} | "
          f"MB to {a.target} |{f' virtual s to {a.target} |' if a.time else ''}")
    print("|---|---|---|---|---|---|---|---|" + ("---|" if a.uplink else "") + ("---|" if a.time else ""))

    def uplink(run_id):
        """Bytes into node 0 when it is a server (star topology); None otherwise."""
        star = con.execute("SELECT 1 FROM run_config WHERE run_id = ? AND key = 'topology.kind' AND value = 'star'",
                           (run_id,)).fetchone()
        if star is None:
            return None
        return con.execute("SELECT COALESCE(SUM(bytes), 0) FROM traffic WHERE run_id = ? AND dst = 0", (run_id,)).fetchone()[0]

    for (name, point), runs in groups.items():
        reached, spent, seconds = [], [], []
        for r in runs:
            row = con.execute("SELECT round, bytes_total, sim_time FROM metric_progress WHERE run_id = ? AND name = ? "
                              "AND value >= ? ORDER BY round LIMIT 1", (r, a.metric, a.target)).fetchone()
            if row is not None:
                reached.append(row[0])
                spent.append(row[1])
                seconds.append(row[2])
        partial = "" if len(reached) == len(runs) else f" ({len(reached)}/{len(runs)} runs)"
        to_target = "never" if not reached else mean_std(reached, 1) + partial
        bytes_to_target = "never" if not reached else mean_std(spent, 1, 1e-6) + partial
        time_to_target = "never" if not reached else mean_std(seconds, 2) + partial
        print(f"| {name} {point}".rstrip() + f" | {len(runs)} | {mean_std([final(r, a.metric) for r in runs])} | "
              f"{mean_std([final(r, 'node_accuracy_mean') for r in runs])} | "
              f"{mean_std([final(r, 'consensus_distance') for r in runs], 4)} | "
              f"{mean_std([final(r, 'bytes_total') for r in runs], 1, 1e-6)} |"
              + (f" {mean_std([uplink(r) for r in runs], 2, 1e-6)} |" if a.uplink else "")
              + f" {to_target} | {bytes_to_target} |"
              + (f" {time_to_target} |" if a.time else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
