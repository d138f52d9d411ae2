#!/usr/bin/env bash
# A 784-65536-65536-65536-10 MLP at density 0.001 per layer (the dense
# equivalent needs 8.6e9 weights = 34 GB of float32 weights, ~100 GB with
# gradients and momentum) trained for one epoch on a CPU, under
# /usr/bin/time -v, on the 8,000 / 2,000 split of the MNIST test files (as
# the first measurement, so samples/s compare). Usage: bash
# benchmarks/giant_mlp.sh [output.json] (from the repo root; needs
# ../shared/datasets/mnist). Default output out/giant_mlp.json. Further
# arguments go to train.py, e.g. --sparse_training=rigl --update_every=30
# (RigL's growth without a dense gradient, measured for memory).
# Runs the checkout it is started in: from an older commit's work tree (with
# that tree's python on PATH) it measures that commit's kernels, for a
# side-by-side ratio on one machine; the output records the commit.
set -euo pipefail
OUT_JSON=${1:-out/giant_mlp.json}
shift || true
WORK=$(mktemp -d)
/usr/bin/time -v -o "$WORK/time.txt" python experiments/train.py \
  --dataset=mnist --data_dir=../shared/datasets/mnist --data_split=test_only \
  --hidden=65536,65536,65536 --density=0.001 --epochs=1 --batch_size=128 \
  --workdir="$WORK/run" --noprogress "$@" | tail -2
python - "$WORK" "$OUT_JSON" "$@" <<'PY'
import json, os, re, subprocess, sys, time
work, out = sys.argv[1:3]
with open(os.path.join(work, "run", "summary.json")) as f:
  s = json.load(f)
text = open(os.path.join(work, "time.txt")).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
# Topology generation and BlockCSR construction of one hidden layer, timed here.
from snn_jax import topology
t0 = time.perf_counter()
t = topology.make("erdos_renyi", 65536, 65536, density=0.001, seed=0)
gen_s = time.perf_counter() - t0
t0 = time.perf_counter()
w = t.to_bcsr()
bcsr_s = time.perf_counter() - t0
row = {"command_extra": sys.argv[3:],
       "sparse_training": s["config"].get("sparse", {}).get("method"),
       "update_every": s["config"].get("sparse", {}).get("update_every"), "widths": s["widths"], "density": s["density"], "nnz_params": s["nnz_params"],
       "dense_params": s["dense_params"], "epochs": s["epochs"],
       "train_seconds_incl_compile": s["train_seconds"],
       "samples_per_second_incl_compile": s["samples_per_second"],
       "final_test_acc": s["final_test_acc"], "peak_rss_gb": rss_kb / 1e6,
       "wall_clock": wall, "layer_generation_s": gen_s, "layer_bcsr_s": bcsr_s,
       "data_source": s.get("data_source"),
       "data_fingerprint": (s.get("data_fingerprint") or {}).get("id"),
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip(),
       "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                          if l.startswith("model name")), None),
       **{k: v for k, v in s.items() if k.startswith(("device_", "version_"))}}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
  json.dump(row, f, indent=1)
print(json.dumps({k: row[k] for k in ("nnz_params", "dense_params", "peak_rss_gb",
                                      "samples_per_second_incl_compile",
                                      "final_test_acc", "layer_generation_s",
                                      "layer_bcsr_s")}, indent=1))
PY
