#!/usr/bin/env bash
# Generic multi-node launch: run this on every node with its own PROCESS_ID.
#   COORDINATOR=10.0.0.1:1234 NUM_PROCESSES=2 PROCESS_ID=0 bash launch/multinode.sh --config=... --workdir=...
# (equivalently set JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID and call the trainer).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${COORDINATOR:?host:port of process 0}" "${NUM_PROCESSES:?}" "${PROCESS_ID:?}"
exec .venv/bin/python -m ml_pipelines.train --coordinator_address="$COORDINATOR" \
  --num_processes="$NUM_PROCESSES" --process_id="$PROCESS_ID" "$@"
