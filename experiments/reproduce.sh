#!/usr/bin/env bash
# Runs the foundation experiments into experiments/results.db and rewrites the table in
# experiments/README.md from that database (numbers are never typed by hand).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
db=experiments/results.db
bin=build/release/apps/starling
[ -x "$bin" ] || { echo "error: build first (./dev.sh quickstart)" >&2; exit 1; }
for config in quickstart fedavg_logreg many_clients; do
  "$bin" run "experiments/$config.yaml" --db "$db" --threads "$(nproc)"
done
table=$(python3 scripts/runs_table.py "$db" quickstart fedavg_logreg many_clients)
python3 - "$table" <<'PY'
import re, sys
path = "experiments/README.md"
text = open(path).read()
start, end = "<!-- table:start -->", "<!-- table:end -->"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), start + "\n" + sys.argv[1] + "\n" + end, text, flags=re.S)
open(path, "w").write(text)
PY
echo "updated experiments/README.md from $db"
