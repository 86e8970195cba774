#!/usr/bin/env bash
# The detailed table (personalized and novel-client accuracy, uplink bytes, virtual time) and the
# figure, from the results database.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db=$(realpath "${1:-$here/results.db}")
/usr/bin/python3 "$here/report.py" "$db" "$here/README.md" "$here/personalization.png"
