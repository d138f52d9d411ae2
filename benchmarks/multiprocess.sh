#!/usr/bin/env bash
# Multi-process overhead (issue 18): one SET-MLP 784-1000-1000-1000-10
# (epsilon 20) on the 60,000 MNIST training images, 2 epochs, batch 128,
# data parallel over 1 process x 1 device, 2 processes x 1 device and 4
# processes x 1 device on this machine (experiments/launch_local.py; CPU
# collectives over gloo). The second epoch's samples/s (no compilation;
# SET's rewiring after epoch 1 counted in epoch 1) is compared. On a 2-core
# machine more processes cannot be faster: the point is the overhead. The
# bytes all-reduced per step are computed from the model (replicated block
# values: one all-reduce of every gradient; sharded: a reduce-scatter of
# the block gradients plus an all-gather of the block values per step).
# Usage: bash benchmarks/multiprocess.sh [output.json] (from the repo root;
# needs ../shared/datasets/mnist with the training files).
set -euo pipefail
OUT_JSON=${1:-out/multiprocess.json}
WORK=$(mktemp -d)
common=(--dataset=mnist --data_dir=../shared/datasets/mnist --data_split=canonical
        --hidden=1000,1000,1000 --epochs=2 --batch_size=128 --noprogress
        --topology_params='{"epsilon": 20, "cap_density": true}'
        --sparse_training=set --data_parallel)
XLA_FLAGS=--xla_force_host_platform_device_count=1 python experiments/train.py \
  "${common[@]}" --workdir="$WORK/p1" | tail -1
for n in 2 4; do
  python experiments/launch_local.py --num_processes=$n --devices_per_process=1 \
    --process_log_dir="$WORK/p${n}_logs" -- experiments/train.py "${common[@]}" \
    --workdir="$WORK/p$n" | tail -1
done
python - "$WORK" "$OUT_JSON" <<'PY'
import json, os, sys
work, out = sys.argv[1:]
rows = {}
for n in (1, 2, 4):
  with open(os.path.join(work, f"p{n}", "metrics.jsonl")) as f:
    epochs = [json.loads(l) for l in f]
  with open(os.path.join(work, f"p{n}", "summary.json")) as f:
    s = json.load(f)
  rows[f"processes_{n}"] = {
      "samples_per_s": [e["samples_per_s"] for e in epochs],
      "epoch_seconds": [e["epoch_s"] for e in epochs],
      "train_loss": [e["train_loss"] for e in epochs],
      "test_acc": [e["test_acc"] for e in epochs],
      "processes": s["processes"], "devices": s["devices"]}
base = rows["processes_1"]["samples_per_s"][1]
for n in (2, 4):
  rows[f"processes_{n}"]["second_epoch_throughput_vs_1"] = (
      rows[f"processes_{n}"]["samples_per_s"][1] / base)
nnz, biases = s["nnz_params"], sum(s["widths"][1:])
steps = 60000 // 128
rows["traffic_per_step_bytes"] = {
    "replicated_all_reduce": 4 * (nnz + biases),
    "sharded_reduce_scatter_plus_all_gather": 4 * (2 * nnz + biases),
    "note": "float32 gradients of every stored weight and bias, once per "
            "optimizer step; a ring all-reduce moves 2(n-1)/n times this per "
            "process, so the per-process bytes stay about constant as "
            "processes are added",
    "steps_per_epoch": steps}
rows["nnz_params"] = nnz
rows["data_fingerprint"] = s["data_fingerprint"]["id"]
rows["data_source"] = s["data_source"]
rows["environment"] = {k: v for k, v in s.items()
                       if k.startswith(("device_", "version_"))}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
  json.dump(rows, f, indent=1)
print(json.dumps({k: rows[k].get("second_epoch_throughput_vs_1")
                  for k in ("processes_2", "processes_4")}, indent=1))
PY
