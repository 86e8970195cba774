#!/usr/bin/python3
"""Markdown table of what each finished run sent per node per round (bytes_total / (rounds x
participants)), with its final test accuracy and, for zo_shared runs, the largest
replica_divergence seen (0 when every replica stayed bit-identical).

usage: scripts/bytes_per_step.py DB
"""
import sys

from starling_db import Parser, main_wrapper, open_db, sweep_params


def main(argv):
    p = Parser(prog="bytes_per_step.py", description="Bytes per node per round of each run.")
    p.add_argument("db")
    a = p.parse_args(argv)
    con = open_db(a.db)

    def final(run_id, metric):
        row = con.execute("SELECT value FROM final_metrics WHERE run_id = ? AND name = ?", (run_id, metric)).fetchone()
        return row[0] if row else None

    print("| run | rounds | nodes | bytes per node per round | final test_accuracy | max replica_divergence |")
    print("|---|---|---|---|---|---|")
    for run_id, name in con.execute("SELECT run_id, name FROM runs WHERE status = 'finished' ORDER BY run_id").fetchall():
        point = " ".join(f"{k.split('.')[-1]}={v}" for k, v in sweep_params(con, run_id))
        rounds = con.execute("SELECT MAX(round) FROM metrics WHERE run_id = ? AND name = 'bytes_total'",
                             (run_id,)).fetchone()[0]
        nodes, total, accuracy = final(run_id, "participants"), final(run_id, "bytes_total"), final(run_id, "test_accuracy")
        divergence = con.execute("SELECT MAX(value) FROM metrics WHERE run_id = ? AND name = 'replica_divergence'",
                                 (run_id,)).fetchone()[0]
        per_step = "-" if not (rounds and nodes and total is not None) else f"{total / (rounds * nodes):,.1f}"
        print(f"| {name} {point}".rstrip() + f" | {rounds or '-'} | {int(nodes) if nodes else '-'} | {per_step} | "
              f"{'-' if accuracy is None else f'{accuracy:.4f}'} | {'-' if divergence is None else f'{divergence:g}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
