#!/usr/bin/env bash
# The main job on the embedded default data: trains the reference task and says where its
# metrics, checkpoints and plot went. Extra arguments are passed to the trainer.
EXTRAS="" source "$(dirname "$0")/env.sh"
WORKDIR="${WORKDIR:-workdirs/digits_cnn}"
exec .venv/bin/python -m ml_pipelines.train \
  --config=configs/classification/digits_cnn.py --workdir="$WORKDIR" "$@"
