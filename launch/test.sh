#!/usr/bin/env bash
# The test suite on the CPU (it simulates 8 devices and 2 processes itself).
EXTRAS="test" source "$(dirname "$0")/env.sh"
export JAX_PLATFORMS=cpu
exec .venv/bin/python -m pytest -n 2 -q "$@" tests
