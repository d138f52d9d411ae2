#!/usr/bin/env bash
# SET-MLP / RigL-MLP against the same network with a static topology, run
# side by side (issue: "a SET-MLP (784-1000-1000-1000-10, epsilon = 20)
# trains on CPU from train.py flags at a speed within 1.5x of static").
# On the 8,000 / 2,000 split of the MNIST test files, as first measured.
# Usage: bash benchmarks/set_vs_static.sh [epochs] [output.json] (from the
# repo root; needs ../shared/datasets/mnist). Default output
# out/set_vs_static.json.
set -euo pipefail
EPOCHS=${1:-10}
OUT_JSON=${2:-out/set_vs_static.json}
OUT=$(mktemp -d)
for method in static set rigl; do
  python experiments/train.py --dataset=mnist --data_dir=../shared/datasets/mnist --data_split=test_only \
    --hidden=1000,1000,1000 --topology_params='{"epsilon": 20, "cap_density": true}' \
    --sparse_training=$method --epochs=$EPOCHS --noprogress \
    --workdir=$OUT/$method | tail -1
done
python - "$OUT" "$OUT_JSON" <<'PY'
import json, os, sys
out, out_json = sys.argv[1:]
rows = {}
for m in ("static", "set", "rigl"):
  with open(os.path.join(out, m, "summary.json")) as f:
    s = json.load(f)
  rows[m] = {k: s[k] for k in ("final_test_acc", "best_test_acc", "train_seconds",
                               "nnz_params", "dense_params", "epochs")}
for m in ("set", "rigl"):
  rows[m]["time_vs_static"] = rows[m]["train_seconds"] / rows["static"]["train_seconds"]
rows["environment"] = {k: v for k, v in s.items()
                       if k.startswith(("device_", "version_"))}
rows["data_source"] = s["data_source"]
os.makedirs(os.path.dirname(out_json) or ".", exist_ok=True)
with open(out_json, "w") as f:
  json.dump(rows, f, indent=1)
for m in ("static", "set", "rigl"):
  r = rows[m]
  print(f"{m:>7}: test acc {r['final_test_acc']:.4f}  train {r['train_seconds']:.1f} s"
        + (f"  ({r['time_vs_static']:.2f}x static)" if m != "static" else ""))
PY
