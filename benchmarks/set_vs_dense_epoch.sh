#!/usr/bin/env bash
# One epoch of SET-MLP 784-1000-1000-1000-10 (epsilon 20) against the same
# MLP dense, on the 60,000 MNIST training images (issue 15's end-to-end
# target: SET >= 4x faster than dense). Each network trains 2 epochs; the
# second epoch's time (metrics.jsonl epoch_s: no compilation, SET's rewiring
# after epoch 1 included in epoch 1 only) is compared, and the first
# epoch's too. The pair (dense, then SET) runs REPEATS times (default 3),
# alternating, because on a noisy machine one run's dense epoch can move by
# a quarter between minutes: every pair's ratio is kept, and the median of
# the pairs' ratios is the headline. Usage: [REPEATS=n] bash
# benchmarks/set_vs_dense_epoch.sh [output.json] (from the repo root; needs
# ../shared/datasets/mnist with the training files).
set -euo pipefail
OUT_JSON=${1:-out/set_vs_dense_epoch.json}
REPEATS=${REPEATS:-3}
WORK=$(mktemp -d)
common=(--dataset=mnist --data_dir=../shared/datasets/mnist --data_split=canonical
        --hidden=1000,1000,1000 --epochs=2 --batch_size=128 --noprogress)
for r in $(seq 1 "$REPEATS"); do
  python experiments/train.py "${common[@]}" --topology=dense \
    --workdir="$WORK/$r/dense" | tail -1
  python experiments/train.py "${common[@]}" \
    --topology_params='{"epsilon": 20, "cap_density": true}' \
    --sparse_training=set --workdir="$WORK/$r/set" | tail -1
done
python - "$WORK" "$OUT_JSON" "$REPEATS" <<'PY'
import json, os, statistics, sys
work, out, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
pairs = []
for r in range(1, repeats + 1):
  rows = {}
  for m in ("dense", "set"):
    with open(os.path.join(work, str(r), m, "metrics.jsonl")) as f:
      epochs = [json.loads(l) for l in f]
    with open(os.path.join(work, str(r), m, "summary.json")) as f:
      s = json.load(f)
    rows[m] = {"epoch_seconds": [e["epoch_s"] for e in epochs],
               "test_acc": [e["test_acc"] for e in epochs],
               "nnz_params": s["nnz_params"], "dense_params": s["dense_params"],
               "data_fingerprint": s["data_fingerprint"]["id"],
               "data_source": s["data_source"]}
  for i, label in ((1, "second_epoch"), (0, "first_epoch_incl_compile")):
    rows[f"set_speedup_{label}"] = (rows["dense"]["epoch_seconds"][i]
                                    / rows["set"]["epoch_seconds"][i])
  pairs.append(rows)
result = {"pairs": pairs}
for label in ("second_epoch", "first_epoch_incl_compile"):
  ratios = [p[f"set_speedup_{label}"] for p in pairs]
  result[f"set_speedup_{label}_median"] = statistics.median(ratios)
  result[f"set_speedup_{label}_range"] = [min(ratios), max(ratios)]
result["environment"] = {k: v for k, v in s.items()
                         if k.startswith(("device_", "version_"))}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
  json.dump(result, f, indent=1)
print(json.dumps({k: v for k, v in result.items() if k.startswith("set_speedup")},
                 indent=1))
PY
