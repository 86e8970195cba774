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
"$bin" sweep experiments/sweep_lr.yaml --db "$db" --jobs "$(nproc)"

# Replaces the text between <!-- NAME:start --> and <!-- NAME:end --> in the README.
replace() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import re, sys
path, (name, body) = "experiments/README.md", sys.argv[1:]
start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
text = open(path).read()
text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: start + "\n" + body + "\n" + end, text, flags=re.S)
open(path, "w").write(text)
PY
}
replace table "$(/usr/bin/python3 scripts/runs_table.py "$db" quickstart fedavg_logreg many_clients)"
replace sweep "$(printf '```\n%s\n```' "$(/usr/bin/python3 scripts/sweep_table.py "$db" --sweep sweep_lr)")"
echo "updated experiments/README.md from $db"
