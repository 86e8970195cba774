#!/usr/bin/python3
"""The personalization experiment's table and figure, from its results database.

usage: experiments/personalization/report.py DB README PNG

Rewrites the <!-- personal:start --> ... <!-- personal:end --> block of README with one row per
configuration (mean ± std over the seeds) and draws personalized accuracy against uplink bytes.
"""
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import starling_db  # noqa: E402
from starling_db import open_db, pyplot, sweep_params  # noqa: E402


def mean_std(values, digits=3, scale=1.0):  # three digits here
    return starling_db.mean_std(values, digits, scale)


def label(con, run_id):
    params = dict(sweep_params(con, run_id))
    kind = params.get("protocol.kind", "fedavg")
    if kind == "fedavg":
        return "FedAvg + fine-tuning (20 steps)" if params.get("eval.finetune_steps", "0") != "0" else "FedAvg"
    text = f"pFedGate s={params.get('protocol.budget')} gate_lr={params.get('protocol.gate_lr')}"
    if params.get("protocol.aggregate_sampled") == "true":
        text += " weights over S"
    return text


def main(argv):
    db, readme, png = argv
    con = open_db(db)
    groups = {}
    for run_id, name in con.execute("SELECT run_id, name FROM runs WHERE status = 'finished' ORDER BY run_id"):
        participation = "10%" if name.endswith("p10") else "100%"
        groups.setdefault((participation, label(con, run_id)), []).append(run_id)

    def final(run_id, metric):
        row = con.execute("SELECT value FROM final_metrics WHERE run_id = ? AND name = ?", (run_id, metric)).fetchone()
        return row[0] if row else None

    def uplink(run_id):
        return con.execute("SELECT COALESCE(SUM(bytes), 0) FROM traffic WHERE run_id = ? AND dst = 0", (run_id,)).fetchone()[0]

    def sim_time(run_id):
        return con.execute("SELECT MAX(sim_time) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]

    def rounds(run_id):
        return con.execute("SELECT MAX(round) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]

    lines = ["| participation | method | runs | rounds | personalized accuracy | novel-client accuracy | "
             "global test accuracy | uplink MB | idealised uplink MB (4 s_i d) | fraction of the model sent | "
             "virtual s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (participation, method), runs in groups.items():
        lines.append(
            f"| {participation} | {method} | {len(runs)} | {rounds(runs[0])} | "
            f"{mean_std([final(r, 'personalized_accuracy') for r in runs])} | "
            f"{mean_std([final(r, 'novel_accuracy') for r in runs])} | "
            f"{mean_std([final(r, 'test_accuracy') for r in runs])} | "
            f"{mean_std([uplink(r) for r in runs], 1, 1e-6)} | "
            f"{mean_std([final(r, 'ideal_uplink_bytes') for r in runs], 1, 1e-6)} | "
            f"{mean_std([final(r, 'sent_fraction') for r in runs])} | "
            f"{mean_std([sim_time(r) for r in runs], 1)} |")
    same, total = con.execute(
        "SELECT SUM(ABS(a.value - b.value) <= 1e-12), COUNT(*) FROM metrics a JOIN metrics b ON a.run_id = b.run_id "
        "AND a.round = b.round AND a.node IS NULL AND b.node IS NULL AND a.name = 'sent_fraction' "
        "AND b.name = 'kept_fraction'").fetchone()
    lines.append("")
    lines.append(f"pFedGate rounds in which every sender used the same blocks in all its minibatches "
                 f"(sent_fraction = kept_fraction): {same or 0} of {total}.")
    table = "\n".join(lines)
    text = open(readme).read()
    start, end = "<!-- personal:start -->", "<!-- personal:end -->"
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: start + "\n" + table + "\n" + end, text, flags=re.S)
    open(readme, "w").write(text)

    # Personalized accuracy against cumulative uplink bytes, first seed of each configuration.
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    methods = list(dict.fromkeys(method for _, method in groups))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    for ax, participation in zip(axes, ["10%", "100%"]):
        for (p, method), runs in groups.items():
            if p != participation:
                continue
            r = min(runs, key=lambda run: con.execute("SELECT seed FROM runs WHERE run_id = ?", (run,)).fetchone()[0])
            points = con.execute(
                "SELECT m.round, m.value FROM metrics m WHERE m.run_id = ? AND m.node IS NULL "
                "AND m.name = 'personalized_accuracy' ORDER BY m.round", (r,)).fetchall()
            xs, ys = [], []
            for rnd, value in points:
                up = con.execute("SELECT COALESCE(SUM(bytes), 0) FROM traffic WHERE run_id = ? AND dst = 0 AND round <= ?",
                                 (r, rnd)).fetchone()[0]
                xs.append(up / 1e6)
                ys.append(value)
            ax.plot(xs, ys, marker="o", markersize=3, label=method, color=colors[method])
        ax.set_title(f"{participation} of the clients per round")
        ax.set_xlabel("uplink bytes (MB, cumulative)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("personalized accuracy (own test split)")
    fig.suptitle("Fashion-MNIST, Dirichlet 0.1, 90 training clients (seed 42)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
