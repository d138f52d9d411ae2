#!/usr/bin/env bash
# The accelerator validation, one command on a GPU (or TPU) machine:
#
#   bash benchmarks/accel_suite.sh gpu      # or: tpu
#
# Installs this checkout into the machine's own Python without touching its
# packages (no dependencies fetched, no native CPU build), then runs
# experiments/bench_kernels.py --suite=gpu|tpu: every kernel verified against
# the dense product on the device (a wrong one is reported, not timed), then
# timed against the dense matmul with the ideal line. Results go to
# $OUT (the device tool's folder) when set, else benchmarks/<suite>/.
set -euo pipefail
suite=${1:-gpu}
case "$suite" in gpu|tpu) ;; *) echo "usage: $0 gpu|tpu" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/$suite}
mkdir -p "$out"
SNN_JAX_SKIP_NATIVE=1 python3 -m pip install -q --no-deps --no-build-isolation \
  -e . 2>&1 | tail -3
python3 -c "import jax; print('devices:', jax.devices())" | tee "$out/devices.txt"
PYTHONUNBUFFERED=1 python3 experiments/bench_kernels.py --suite="$suite" \
  --output_dir="$out" 2>&1 | tee "$out/bench_${suite}.log"
