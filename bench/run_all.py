#!/usr/bin/python3
"""Runs Starling's benchmarks and the end-to-end comparison with the plain PyTorch FedAvg loop
(../shared/baselines/fedavg_torch.py, or $STARLING_TORCH_BASELINE), and writes bench/RESULTS.md.

Every number in RESULTS.md comes from this run on this machine; nothing is typed by hand.
Run it on an otherwise idle machine: `./dev.sh bench`.
"""
import datetime
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "release")
STARLING = os.path.join(BUILD, "apps", "starling")
BASELINE = os.environ.get("STARLING_TORCH_BASELINE",
                          os.path.join(ROOT, "..", "shared", "baselines", "fedavg_torch.py"))
REPEATS = int(os.environ.get("STARLING_BENCH_REPEATS", "3"))


def run(cmd, **kw):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def google_benchmark(binary):
    out = json.loads(run([os.path.join(BUILD, "bench", binary), "--benchmark_format=json",
                          "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"]))
    return {b["run_name"]: b for b in out["benchmarks"] if b.get("aggregate_name") == "median"}


def starling_run(config, threads, overrides=()):
    """Median wall seconds (the run's own wall_seconds metric: data loading excluded)."""
    walls, acc = [], None
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        for _ in range(REPEATS):
            cmd = [STARLING, "run", os.path.join(ROOT, config), "--db", db, "--threads", str(threads), "--quiet"]
            for o in overrides:
                cmd += ["--set", o]
            run(cmd)
        con = sqlite3.connect(db)
        for (run_id,) in con.execute("SELECT run_id FROM runs"):
            walls.append(con.execute("SELECT value FROM metrics WHERE run_id=? AND name='wall_seconds' "
                                     "ORDER BY round DESC LIMIT 1", (run_id,)).fetchone()[0])
            acc = con.execute("SELECT value FROM metrics WHERE run_id=? AND name='test_accuracy' "
                              "ORDER BY round DESC LIMIT 1", (run_id,)).fetchone()[0]
    return sorted(walls)[len(walls) // 2], acc


def torch_run(args, threads):
    """Median TOTAL secs of the reference loop (its round loop: data loading excluded)."""
    secs, acc = [], None
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # The baseline's own advice: torch over OpenBLAS's OpenMP build. Whichever OpenBLAS build is the
    # system default (serial or pthread), torch's OpenMP threads fight it (pthread at 2 threads: ~3x
    # slower than 1), so point torch's BLAS at the OpenMP build explicitly.
    openmp_blas = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
    if os.path.isdir(openmp_blas):
        env["LD_LIBRARY_PATH"] = openmp_blas + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    for _ in range(REPEATS):
        out = run(["/usr/bin/python3", BASELINE, "--threads", str(threads), "--loader", "tensor"] + args, env=env)
        total = re.search(r"^TOTAL (.*)$", out, re.M).group(1)
        fields = dict(kv.split("=") for kv in total.split())
        secs.append(float(fields["secs"]))
        acc = float(fields["final_acc"])
    return sorted(secs)[len(secs) // 2], acc


def scale_run():
    """1,000 gossip nodes each holding an mlp: wall seconds, node-rounds per second, peak memory."""
    import resource
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "scale.db")
        config = "experiments/decentralized/scale_gossip.yaml"
        run([STARLING, "run", os.path.join(ROOT, config), "--db", db, "--threads", "2", "--quiet"])
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        con = sqlite3.connect(db)
        wall, rounds = con.execute("SELECT value, round FROM metrics WHERE name = 'wall_seconds' "
                                   "ORDER BY round DESC LIMIT 1").fetchone()
        nodes = int(con.execute("SELECT value FROM run_config WHERE key = 'data.clients'").fetchone()[0])
    return nodes, rounds, wall, peak_mib


DEPLOY_CONFIG = """name: deploy_latency
seed: 1
rounds: 30
data: { dataset: synthetic, clients: 32 }
model: { kind: logreg }
train: { lr: 0.05, batch_size: 32, local_epochs: 1 }
sampling: { kind: uniform, fraction: 1.0 }
eval: { every: 1000 }
"""


# D-PSGD on the same 32 nodes (a ring): no server, and every node's model also goes to the
# coordinator's round observer each round.
DPSGD_SETS = ["protocol.kind=dpsgd", "topology.kind=ring"]


def deploy_round_latency(procs, sets=()):
    """Median over REPEATS of the mean real seconds per round of `starling launch` (32 clients, all
    of them every round, logreg on synthetic data; `sets`: --set overrides) with `procs` node
    processes on this machine."""
    per_round = []
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "deploy.yaml")
        with open(config, "w") as fh:
            fh.write(DEPLOY_CONFIG)
        db = os.path.join(tmp, "deploy.db")
        for _ in range(REPEATS):
            run([STARLING, "launch", config, "--procs", str(procs), "--db", db, "--quiet"]
                + [arg for s in sets for arg in ("--set", s)])
        con = sqlite3.connect(db)
        for (run_id,) in con.execute("SELECT run_id FROM runs"):
            rounds, wall = con.execute("SELECT MAX(round), MAX(value) FROM metrics WHERE run_id=? AND "
                                       "name='wall_seconds'", (run_id,)).fetchone()
            per_round.append(wall / rounds)
    return sorted(per_round)[len(per_round) // 2]


def main():
    compress = google_benchmark("bench_compressors")
    aggregate = google_benchmark("bench_aggregators")
    engine = google_benchmark("bench_engine")
    training = google_benchmark("bench_training")
    deploy = google_benchmark("bench_deploy")
    latency = {procs: deploy_round_latency(procs) for procs in (8, 32)}
    dpsgd_latency = {procs: deploy_round_latency(procs, DPSGD_SETS) for procs in (8, 32)}
    phold = engine["BM_Phold/processes:1000"]["events/s"]
    phold_big = engine["BM_Phold/processes:100000"]["events/s"]
    t_logreg = training["BM_LocalTraining/hidden_layers:0"]
    t_mlp = training["BM_LocalTraining/hidden_layers:2"]
    blas_logreg = training.get("BM_OpenBlasSameShapes/hidden_layers:0", {}).get("GFLOP/s")
    blas_mlp = training.get("BM_OpenBlasSameShapes/hidden_layers:2", {}).get("GFLOP/s")

    # Same workloads on both sides (see bench/README in RESULTS.md).
    qs_torch = ["--model", "mlp", "-N", "100", "-C", "0.1", "--rounds", "100", "--lr", "0.15", "--alpha", "0.5",
                "-E", "1", "-B", "32", "--eval-every", "1", "--seed", "42"]
    mc_torch = ["--model", "logreg", "-N", "1000", "-C", "0.1", "--rounds", "100", "--lr", "0.1", "--alpha", "0.5",
                "-E", "1", "-B", "32", "--eval-every", "10", "--seed", "42"]
    have_torch = os.path.exists(BASELINE) and subprocess.run(
        ["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0

    qs1, qs1_acc = starling_run("experiments/quickstart.yaml", 1)
    qs2, qs2_acc = starling_run("experiments/quickstart.yaml", 2)
    mc1, mc1_acc = starling_run("experiments/many_clients.yaml", 1)
    mc_updates = 100 * 100  # rounds x clients per round
    scale_nodes, scale_rounds, scale_wall, scale_mib = scale_run()
    rows = []
    if have_torch:
        tq1, tq1_acc = torch_run(qs_torch, 1)
        tq2, tq2_acc = torch_run(qs_torch, 2)
        tm1, tm1_acc = torch_run(mc_torch, 1)

    def f(x, nd=2):
        return "-" if x is None else f"{x:,.{nd}f}"

    lines = []
    lines.append("# Benchmark results\n")
    lines.append(f"Written by `bench/run_all.py` on {datetime.date.today()} "
                 f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores); "
                 f"medians of {REPEATS} runs. Re-run with `./dev.sh bench` on an idle machine.\n")
    lines.append("## Micro-benchmarks (one thread)\n")
    lines.append("| benchmark | result | target |")
    lines.append("|---|---|---|")
    lines.append(f"| event engine, PHOLD 1,000 processes | {phold / 1e6:.2f} M events/s | >= 5 M events/s |")
    lines.append(f"| event engine, PHOLD 100,000 processes | {phold_big / 1e6:.2f} M events/s | |")
    lines.append(f"| local training, logreg, batch 32 | {t_logreg['samples/s'] / 1e3:,.0f} k samples/s, "
                 f"{t_logreg['GFLOP/s']:.1f} GFLOP/s | |")
    lines.append(f"| local training, mlp 784-200-200-10, batch 32 | {t_mlp['samples/s'] / 1e3:,.1f} k samples/s, "
                 f"{t_mlp['GFLOP/s']:.1f} GFLOP/s | |")
    if blas_mlp:
        lines.append(f"| OpenBLAS SGEMM, the same GEMMs as logreg training | {blas_logreg:.1f} GFLOP/s | |")
        lines.append(f"| OpenBLAS SGEMM, the same GEMMs as mlp training | {blas_mlp:.1f} GFLOP/s | |")
        lines.append(f"| **mlp training / OpenBLAS SGEMM rate** | **{100 * t_mlp['GFLOP/s'] / blas_mlp:.0f}%** | >= 60% |")
    lines.append("")
    lines.append("## End to end, against the plain PyTorch FedAvg loop\n")
    lines.append("Wall seconds of the training loop (data loading excluded on both sides). Starling: the run's "
                 "`wall_seconds`; PyTorch: the reference loop's `TOTAL secs` (`--loader tensor`, the leaner of its "
                 "two loaders). Same clients, partition scheme, model, batch, epochs, rounds and evaluation "
                 "frequency.\n")
    lines.append("| workload | Starling | PyTorch loop | speed-up | target | Starling acc. | PyTorch acc. |")
    lines.append("|---|---|---|---|---|---|---|")
    if have_torch:
        lines.append(f"| quick-start (mlp, 100 clients, 100 rounds), 1 thread | {qs1:.2f} s | {tq1:.2f} s | "
                     f"{tq1 / qs1:.1f}x | | {qs1_acc:.4f} | {tq1_acc:.4f} |")
        lines.append(f"| quick-start, 2 threads | {qs2:.2f} s | {tq2:.2f} s | **{tq2 / qs2:.1f}x** | >= 2x | "
                     f"{qs2_acc:.4f} | {tq2_acc:.4f} |")
        lines.append(f"| many_clients (logreg, 1,000 clients, 100 rounds), 1 thread: client updates/s | "
                     f"{mc_updates / mc1:,.0f} | {mc_updates / tm1:,.0f} | **{tm1 / mc1:.1f}x** | >= 10x | "
                     f"{mc1_acc:.4f} | {tm1_acc:.4f} |")
    else:
        lines.append(f"| quick-start, 1 thread | {qs1:.2f} s | (torch missing) | | | {qs1_acc:.4f} | |")
        lines.append(f"| quick-start, 2 threads | {qs2:.2f} s | (torch missing) | | | {qs2_acc:.4f} | |")
        lines.append(f"| many_clients, 1 thread: client updates/s | {mc_updates / mc1:,.0f} | (torch missing) | | | "
                     f"{mc1_acc:.4f} | |")
    lines.append("")
    lines.append("Accuracies differ because the two loops draw different partitions and minibatches from "
                 "their seeds; both reach the same range.\n")
    lines.append("## Scale: decentralized learning with many model-holding nodes\n")
    lines.append(f"`experiments/decentralized/scale_gossip.yaml`: {scale_nodes:,} gossip-learning nodes, each holding "
                 f"its own mlp 784-200-200-10 (199,210 parameters, 0.8 MB), {scale_rounds} rounds, 2 threads: "
                 f"{scale_wall:.1f} s wall, **{scale_nodes * scale_rounds / scale_wall:,.0f} node-rounds/s**; "
                 f"peak memory of the largest process {scale_mib:,.0f} MiB, i.e. about "
                 f"{scale_mib / scale_nodes:.2f} MiB per node including the dataset and the process.\n")
    lines.append("")
    lines.append("## Compression: encode + decode throughput (one thread)\n")
    lines.append("GB/s of float32 input, decoding into the receiver's reused buffer (`decode_into`); `copy` is a "
                 "plain memcpy of the same data, the physical limit. "
                 "Target (issue 4): topk and qsgd at >= 25% of copy at d = 10^7.\n")
    ops = ["none", "bf16", "topk_1pct", "randk_1pct", "qsgd_4bit", "sign", "count_sketch", "random_projection"]
    lines.append("| d | copy | " + " | ".join(ops) + " |")
    lines.append("|---|---|" + "---|" * len(ops))
    for d in (100000, 1000000, 10000000):
        copy = compress[f"BM_Copy/d:{d}"]["bytes_per_second"]
        cells = [f"{compress[f'BM_EncodeDecode/{op}/d:{d}']['bytes_per_second'] / 1e9:.2f} "
                 f"({100 * compress[f'BM_EncodeDecode/{op}/d:{d}']['bytes_per_second'] / copy:.0f}%)" for op in ops]
        lines.append(f"| {d:,} | {copy / 1e9:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Aggregation: 100 updates of d = 10^6 (default TBB threads)\n")
    lines.append("GB/s of input read (400 MB per combine); `read` sums the same 100 vectors block by block, the "
                 "machine's read bandwidth in this run. Targets (issue 5): mean >= 50% of read; median and trimmed "
                 "mean within 10x of mean's time.\n")
    bandwidth = aggregate["BM_ReadBandwidth/real_time"]["bytes_per_second"]
    mean_rate = aggregate["BM_Aggregate/mean/real_time"]["bytes_per_second"]
    lines.append(f"| rule | GB/s | % of read ({bandwidth / 1e9:.2f} GB/s) | time / mean's |")
    lines.append("|---|---|---|---|")
    for rule in ("mean", "median", "trimmed_mean", "majority_vote", "geometric_median", "centered_clip", "krum"):
        rate = aggregate[f"BM_Aggregate/{rule}/real_time"]["bytes_per_second"]
        lines.append(f"| {rule} | {rate / 1e9:.2f} | {100 * rate / bandwidth:.0f}% | {mean_rate / rate:.1f}x |")
    lines.append("")
    lines.append("## Deployment over gRPC (loopback)\n")
    lines.append("One model update of d floats per round trip on a bidirectional gRPC stream, with the "
                 "deployment's own conversions (payload copied into the protobuf message and out again), "
                 "against the same bytes on a plain TCP socket in the same run (`bench/deploy_bench.cc`).\n")
    lines.append("| d | gRPC update MB/s | raw TCP MB/s | gRPC / TCP |")
    lines.append("|---|---|---|---|")
    for d in (1000000, 10000000):
        g = deploy[f"BM_GrpcUpdate/d:{d}/real_time"]["bytes_per_second"]
        t = deploy[f"BM_TcpCopy/d:{d}/real_time"]["bytes_per_second"]
        lines.append(f"| {d:,} | {g / 1e6:,.0f} | {t / 1e6:,.0f} | {100 * g / t:.0f}% |")
    lines.append("")
    lines.append("Round latency of `starling launch` (FedAvg, logreg on synthetic data, 32 clients all taking "
                 "part each round, coordinator and node processes on this machine): "
                 + ", ".join(f"{procs} node processes {1e3 * latency[procs]:.1f} ms per round" for procs in (8, 32))
                 + ". D-PSGD on the same 32 nodes (ring, one gossip step; every node's model also goes to the "
                 "coordinator's round observer): "
                 + ", ".join(f"{procs} node processes {1e3 * dpsgd_latency[procs]:.1f} ms per round" for procs in (8, 32))
                 + ".\n")
    text = "\n".join(lines)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
