#!/usr/bin/env bash
# Runs one experiment folder from scratch and rewrites the table in its README from the results
# database (numbers are never typed by hand).
#   experiments/run.sh gossip_steps|single_merge|variance_correction|zo_shared|compression|async|robust|heterogeneity|monna|fedopt|scaffold_compression|participation|personalization [--target ACC] [--uplink] [--time]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name=${1:?usage: experiments/run.sh NAME [--target ACC]}
shift
dir=experiments/$name
[ -d "$dir" ] || { echo "error: no experiment folder $dir" >&2; exit 2; }
bin=build/release/apps/starling
[ -x "$bin" ] || { echo "error: build first (./dev.sh quickstart)" >&2; exit 1; }
db=$dir/results.db
# STARLING_REUSE_DB=1 only rewrites the README and figures from the existing database.
if [ "${STARLING_REUSE_DB:-0}" != 1 ]; then
  rm -f "$db" "$db-wal" "$db-shm"
  for config in "$dir"/*.yaml; do
    "$bin" sweep "$config" --db "$db" --jobs "$(nproc)" --quiet
  done
fi
table=$(/usr/bin/python3 scripts/summary_table.py "$db" "$@")
# A README with a bytes block also gets scripts/bytes_per_step.py's table there.
bytes=""
if grep -q "<!-- bytes:start -->" "$dir/README.md"; then bytes=$(/usr/bin/python3 scripts/bytes_per_step.py "$db"); fi
# A README with a pivot block gets the sweep named after the folder as a pivot table (first swept key
# down, second across): the mean of the last 10 evaluations, then the final value.
pivot=""
if grep -q "<!-- pivot:start -->" "$dir/README.md"; then
  pivot=$(/usr/bin/python3 scripts/sweep_table.py "$db" --sweep "$name" --stat tail --markdown
          echo
          /usr/bin/python3 scripts/sweep_table.py "$db" --sweep "$name" --stat final --markdown)
fi
/usr/bin/python3 - "$dir/README.md" table "$table" bytes "$bytes" pivot "$pivot" <<'PY'
import re, sys
path, *blocks = sys.argv[1:]
text = open(path).read()
for name, body in zip(blocks[::2], blocks[1::2]):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if body:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: start + "\n" + body + "\n" + end, text,
                      flags=re.S)
open(path, "w").write(text)
PY
# A folder may also draw its figures from the same database.
if [ -x "$dir/plot.sh" ]; then "$dir/plot.sh" "$db"; fi
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null 2>&1 || true
echo "updated $dir/README.md from $db"
