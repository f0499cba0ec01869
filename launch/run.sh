#!/usr/bin/env bash
# The main job on the embedded default data: the audio-visual imbalance demo (av_demo, CPU). Trains
# the unimodal references, vanilla joint training and every balancing method through the trainer,
# prints one table (fused / audio / visual test accuracy per method) and says where the metrics,
# checkpoints and plots went. Extra arguments go to ml_pipelines.jobs.multimodal_demo (e.g. --epochs=10).
EXTRAS="" source "$(dirname "$0")/env.sh"
WORKDIR="${WORKDIR:-workdirs/multimodal_demo}"
exec .venv/bin/python -m ml_pipelines.jobs.multimodal_demo --workdir="$WORKDIR" "$@"
