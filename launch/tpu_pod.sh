#!/usr/bin/env bash
# Runs the same training command on every worker of a Cloud TPU VM slice.
#   TPU_NAME=my-v4-32 ZONE=us-central2-b bash launch/tpu_pod.sh \
#       --config=configs/backbones/vit_b16.py:imagenet2012 --workdir=gs://bucket/vit_b16
# Each worker installs the project with the `tpu` extra on first use; jax.distributed.initialize()
# discovers the slice by itself (--distributed=auto). The workdir must be shared (a GCS bucket).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO="${REPO:-$(git config --get remote.origin.url)}"
BRANCH="${BRANCH:-$(git rev-parse --abbrev-ref HEAD)}"
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  [ -d ml_pipelines_repo ] || git clone -q --branch $BRANCH $REPO ml_pipelines_repo
  cd ml_pipelines_repo && git pull -q
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -e '.[tpu]'
  .venv/bin/python -m ml_pipelines.train --distributed=auto $ARGS
"
