#!/usr/bin/env bash
# Accuracy against bytes on the wire, one figure per protocol, from the results database.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db=$(realpath "${1:-$here/results.db}")
cd "$here"
# FedAvg compresses the uplink only: plot against the bytes the server received.
/usr/bin/python3 ../../scripts/compare.py "$db" --name compression_fedavg --x uplink_bytes --logx \
  --title "FedAvg: test accuracy vs uplink bytes" --png compression_fedavg.png >/dev/null
/usr/bin/python3 ../../scripts/compare.py "$db" --name compression_dpsgd --x bytes_total --logx \
  --title "D-PSGD (CHOCO): test accuracy vs bytes on the wire" --png compression_dpsgd.png >/dev/null
