"""The result scripts against a database produced by a tiny real sweep (synthetic data)."""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import unittest

BIN = os.environ.get("STARLING_BIN", "")
SCRIPTS = os.environ.get("STARLING_SCRIPTS", os.path.join(os.path.dirname(__file__), "..", "scripts"))

CONFIG = textwrap.dedent("""\
    name: tiny
    seed: 5
    rounds: 6
    data: { dataset: synthetic, clients: 10 }
    model: { kind: logreg }
    train: { lr: 0.05, batch_size: 16 }
    sampling: { kind: uniform, fraction: 0.5 }
    sweep:
      name: tiny_sweep
      repeat: 2
      grid:
        train.lr: [0.01, 0.1]
        sampling.fraction: [0.3, 0.6]
    """)


def have_matplotlib():
    return subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0


class ScriptsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BIN:
            raise unittest.SkipTest("STARLING_BIN is not set (run through ctest)")
        cls.tmp = tempfile.mkdtemp(prefix="starling-scripts-")
        cls.db = os.path.join(cls.tmp, "results.db")
        config = os.path.join(cls.tmp, "tiny.yaml")
        with open(config, "w") as fh:
            fh.write(CONFIG)
        sweep = subprocess.run([BIN, "sweep", config, "--db", cls.db, "--jobs", "2"], capture_output=True, text=True)
        assert sweep.returncode == 0, sweep.stderr
        cls.sweep_output = sweep.stdout + sweep.stderr
        single = subprocess.run([BIN, "run", config, "--db", cls.db, "--quiet", "--set", "name=single"],
                                capture_output=True, text=True)
        assert single.returncode == 0, single.stderr
        cls.single_stderr = single.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def script(self, name, *args, expect=0):
        r = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args], capture_output=True, text=True)
        self.assertEqual(r.returncode, expect, f"{name} {args}: {r.stdout}\n{r.stderr}")
        return r.stdout, r.stderr

    def query(self, sql, *params):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    # -- the sweep itself
    def test_sweep_records_every_point_and_repeat(self):
        rows = self.query("SELECT p1.value, p2.value, s.repeat, r.seed, r.status FROM sweep_runs s "
                          "JOIN runs r ON r.run_id = s.run_id "
                          "JOIN sweep_params p1 ON p1.run_id = s.run_id AND p1.key = 'train.lr' "
                          "JOIN sweep_params p2 ON p2.run_id = s.run_id AND p2.key = 'sampling.fraction' "
                          "WHERE s.sweep = 'tiny_sweep'")
        self.assertEqual(sorted((lr, f, rep, seed) for lr, f, rep, seed, _ in rows),
                         sorted((lr, f, rep, 5 + rep) for lr in ("0.01", "0.1") for f in ("0.3", "0.6")
                                for rep in (0, 1)))
        self.assertTrue(all(status == "finished" for *_, status in rows))
        # The swept values really reached the runs' resolved configs.
        lrs = self.query("SELECT c.value FROM run_config c JOIN sweep_params p ON p.run_id = c.run_id "
                         "AND p.key = 'train.lr' WHERE c.key = 'train.lr' AND c.value != p.value")
        self.assertEqual(lrs, [])
        self.assertIn("ignoring the sweep: section", self.single_stderr)

    def test_views(self):
        summary = self.query("SELECT name, status, model, clients, rounds, test_accuracy FROM run_summary "
                             "WHERE name = 'single'")
        self.assertEqual(len(summary), 1)
        name, status, model, clients, rounds, acc = summary[0]
        self.assertEqual((name, status, model, clients, rounds), ("single", "finished", "logreg", "10", 6))
        self.assertGreater(acc, 0.1)
        final = dict(self.query("SELECT f.name, f.value FROM final_metrics f JOIN runs r ON r.run_id = f.run_id "
                                "WHERE r.name = 'single'"))
        self.assertEqual(final["test_accuracy"], acc)
        progress = self.query("SELECT p.bytes_total FROM metric_progress p JOIN runs r ON r.run_id = p.run_id "
                              "WHERE r.name = 'single' AND p.name = 'test_accuracy' ORDER BY p.round")
        self.assertEqual(len(progress), 6)
        self.assertTrue(all(b2[0] > b1[0] for b1, b2 in zip(progress, progress[1:])))

    # -- runs.py
    def test_runs_filters(self):
        out, _ = self.script("runs.py", self.db)
        self.assertEqual(out.count("tiny_sweep"), 8)
        self.assertIn("single", out)
        out, _ = self.script("runs.py", self.db, "--where", "train.lr=0.1", "--sweep", "tiny_sweep")
        body = out.strip().splitlines()[2:]
        self.assertEqual(len(body), 4)
        self.assertTrue(all("train.lr=0.1 " in line for line in body))
        out, _ = self.script("runs.py", self.db, "--name", "sing*")
        self.assertEqual(len(out.strip().splitlines()), 3)
        out, _ = self.script("runs.py", self.db, "--name", "nothing*")
        self.assertIn("(no runs match)", out)

    # -- compare.py
    def test_compare_table_csv_and_plot(self):
        ids = [r[0] for r in self.query("SELECT run_id FROM runs ORDER BY run_id LIMIT 2")]
        csv_path = os.path.join(self.tmp, "cmp.csv")
        args = ["--runs", ",".join(map(str, ids)), "--metric", "test_accuracy", "--x", "bytes_total",
                "--csv", csv_path]
        png_path = os.path.join(self.tmp, "cmp.png")
        if have_matplotlib():
            args += ["--png", png_path]
        out, _ = self.script("compare.py", self.db, *args)
        with open(csv_path) as fh:
            lines = fh.read().strip().splitlines()
        self.assertEqual(lines[0], f"round,run {ids[0]} bytes_total,run {ids[0]} test_accuracy,"
                                   f"run {ids[1]} bytes_total,run {ids[1]} test_accuracy")
        self.assertEqual(len(lines), 1 + 6)
        acc = self.query("SELECT value FROM metrics WHERE run_id = ? AND name = 'test_accuracy' AND round = 6", ids[0])
        self.assertAlmostEqual(float(lines[-1].split(",")[2]), acc[0][0])
        if have_matplotlib():
            self.assertGreater(os.path.getsize(png_path), 1000)
            with open(png_path, "rb") as fh:
                self.assertEqual(fh.read(8), b"\x89PNG\r\n\x1a\n")

    # -- to_target.py
    def test_to_target(self):
        single = self.query("SELECT run_id FROM runs WHERE name = 'single'")[0][0]
        values = self.query("SELECT round, value FROM metrics WHERE run_id = ? AND name = 'test_accuracy' "
                            "ORDER BY round", single)
        target = values[2][1]  # reached at round 3 at the latest
        first = next(r for r, v in values if v >= target)
        out, _ = self.script("to_target.py", self.db, "--target", repr(target), "--runs", str(single))
        row = out.strip().splitlines()[-1].split()  # run N single ROUNDS MB SECONDS BEST
        self.assertEqual(row[:3], ["run", str(single), "single"])
        self.assertEqual(int(row[3]), first)
        out, _ = self.script("to_target.py", self.db, "--target", "1.01", "--runs", str(single))
        self.assertIn("never", out)
        out, _ = self.script("to_target.py", self.db, "--metric", "test_loss", "--below", "--target", "100",
                             "--runs", str(single))
        self.assertEqual(out.strip().splitlines()[-1].split()[3], "1")  # any loss is below 100 at round 1

    # -- sweep_table.py
    def test_sweep_table_means_over_repeats(self):
        out, _ = self.script("sweep_table.py", self.db, "--sweep", "tiny_sweep")
        lines = out.strip().splitlines()
        self.assertIn("train.lr \\ sampling.fraction", lines[1])
        finals = self.query("SELECT f.value FROM final_metrics f JOIN sweep_params a ON a.run_id = f.run_id "
                            "AND a.key = 'train.lr' AND a.value = '0.1' JOIN sweep_params b ON b.run_id = f.run_id "
                            "AND b.key = 'sampling.fraction' AND b.value = '0.6' WHERE f.name = 'test_accuracy'")
        mean = sum(v for (v,) in finals) / len(finals)
        row = next(line for line in lines if line.startswith("0.1 "))
        self.assertIn(f"{mean:.4f} ±", row)
        self.assertIn("(n=2)", row)

    def test_sweep_table_tail_averages_the_last_values(self):
        out, _ = self.script("sweep_table.py", self.db, "--sweep", "tiny_sweep", "--stat", "tail", "--tail", "2",
                             "--markdown")
        per_run = self.query(
            "SELECT m.run_id, m.value FROM metrics m JOIN sweep_params a ON a.run_id = m.run_id AND a.key = 'train.lr' "
            "AND a.value = '0.1' JOIN sweep_params b ON b.run_id = m.run_id AND b.key = 'sampling.fraction' "
            "AND b.value = '0.6' WHERE m.name = 'test_accuracy' AND m.node IS NULL ORDER BY m.run_id, m.round DESC")
        tails = {}
        for run_id, value in per_run:
            tails.setdefault(run_id, [])
            if len(tails[run_id]) < 2:
                tails[run_id].append(value)
        mean = sum(sum(v) / len(v) for v in tails.values()) / len(tails)
        row = next(line for line in out.splitlines() if line.startswith("| 0.1 |"))
        self.assertIn(f"{mean:.4f} ±", row)
        self.assertIn("|---|", out)
        _, err = self.script("sweep_table.py", self.db, "--sweep", "tiny_sweep", "--stat", "tail", "--tail", "0",
                             expect=2)
        self.assertIn("--tail", err)

    # -- bytes_per_step.py
    def test_bytes_per_step_divides_by_rounds_and_participants(self):
        out, _ = self.script("bytes_per_step.py", self.db)
        rows = [line.split(" | ") for line in out.strip().splitlines()[2:]]
        self.assertEqual(len(rows), 9)  # 8 sweep runs + single
        single = next(r for r in rows if r[0] == "| single")
        final = dict(self.query("SELECT f.name, f.value FROM final_metrics f JOIN runs r ON r.run_id = f.run_id "
                                "WHERE r.name = 'single'"))
        self.assertEqual(single[1], "6")
        self.assertEqual(single[3], f"{final['bytes_total'] / (6 * final['participants']):,.1f}")
        self.assertEqual(single[5].strip(" |"), "-")  # not a zo_shared run

    def test_compare_uplink_bytes_are_cumulative_traffic_into_the_server(self):
        run_id = self.query("SELECT run_id FROM runs WHERE name = 'single'")[0][0]
        csv_path = os.path.join(self.tmp, "up.csv")
        self.script("compare.py", self.db, "--runs", str(run_id), "--x", "uplink_bytes", "--csv", csv_path)
        with open(csv_path) as fh:
            last = fh.read().strip().splitlines()[-1].split(",")
        total = self.query("SELECT SUM(bytes) FROM traffic WHERE run_id = ? AND dst = 0", run_id)[0][0]
        self.assertAlmostEqual(float(last[1]), total / 1e6, places=6)

    def test_compare_by_name_selects_that_names_runs(self):
        ids = [r[0] for r in self.query("SELECT run_id FROM runs WHERE name = 'tiny' ORDER BY run_id")]
        self.assertEqual(len(ids), 8)
        out, _ = self.script("compare.py", self.db, "--name", "tiny", "--x", "bytes_total", "--logx")
        self.assertEqual([line.split(":")[0] for line in out.splitlines() if line.startswith("run ") and ":" in line],
                         [f"run {i}" for i in ids])

    # -- summary_table.py
    def test_summary_table_groups_sweep_points_and_reports_uplink_bytes(self):
        out, _ = self.script("summary_table.py", self.db, "--target", "0.5", "--uplink")
        rows = [line for line in out.splitlines() if line.startswith("| tiny ") or line.startswith("| single")]
        self.assertEqual(len(rows), 1 + 4)  # the single run, and 4 grid points of 2 repeats each
        single = next(line for line in rows if line.startswith("| single")).split("|")
        self.assertEqual(single[2].strip(), "1")
        run_id = self.query("SELECT run_id FROM runs WHERE name = 'single'")[0][0]
        up = self.query("SELECT SUM(bytes) FROM traffic WHERE run_id = ? AND dst = 0", run_id)[0][0]
        self.assertGreater(up, 0)
        self.assertEqual(single[7].strip(), f"{up / 1e6:.2f}")
        for line in rows:
            if line.startswith("| tiny "):
                self.assertEqual(line.split("|")[2].strip(), "2")

    def test_summary_table_time_to_target_is_the_first_reaching_rows_sim_time(self):
        out, _ = self.script("summary_table.py", self.db, "--target", "0.5", "--time")
        header = out.splitlines()[0]
        self.assertTrue(header.endswith("| virtual s to 0.5 |"), header)
        single = next(line for line in out.splitlines() if line.startswith("| single")).split("|")
        run_id = self.query("SELECT run_id FROM runs WHERE name = 'single'")[0][0]
        first = self.query("SELECT sim_time FROM metric_progress WHERE run_id = ? AND name = 'test_accuracy' "
                           "AND value >= 0.5 ORDER BY round LIMIT 1", run_id)
        self.assertEqual(single[9].strip(), f"{first[0][0]:.2f}" if first else "never")
        self.assertEqual(len(single), 11)  # 9 columns plus the empty ends

    # -- bad arguments
    def test_usage_errors(self):
        _, err = self.script("compare.py", self.db, "--runs", "999", expect=2)
        self.assertIn("no run 999", err)
        _, err = self.script("compare.py", self.db, expect=2)
        self.assertIn("--runs", err)
        _, err = self.script("compare.py", self.db, "--runs", "1", "--x", "hours", expect=2)
        self.assertIn("invalid choice", err)
        _, err = self.script("compare.py", self.db, "--name", "nope", expect=2)
        self.assertIn("no finished run named 'nope'", err)
        _, err = self.script("compare.py", self.db, "--runs", "1", "--name", "single", expect=2)
        self.assertIn("either --runs or --name", err)
        _, err = self.script("sweep_table.py", self.db, "--sweep", "nope", expect=2)
        self.assertIn("known: tiny_sweep", err)
        _, err = self.script("to_target.py", os.path.join(self.tmp, "missing.db"), "--target", "0.5", expect=2)
        self.assertIn("no such results database", err)
        _, err = self.script("runs.py", self.db, "--where", "train.lr", expect=2)
        self.assertIn("key.path=value", err)


if __name__ == "__main__":
    unittest.main()
