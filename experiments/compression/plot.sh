#!/usr/bin/env bash
# Accuracy against bytes on the wire, one figure per protocol, from the results database.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
db=${1:-results.db}
for name in compression_fedavg compression_dpsgd; do
  /usr/bin/python3 ../../scripts/compare.py "$db" --name "$name" --x bytes_total --logx \
    --title "$name: test accuracy vs bytes on the wire" --png "$name.png" >/dev/null
done
