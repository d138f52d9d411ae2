"""RigL's growth on one wide layer: the engine's device rule
(``sparse_training.grow_by_gradient``, jitted) against the host NumPy rule
the training loop used before the single engine (kept as the test oracle,
``tests/sparse_training/host_oracle.grow_by_gradient``), each in a fresh
process, side by side in one run: seconds per update (after compilation)
and the process's peak resident memory.

The layer is Erdős–Rényi at ``--density`` (the giant MLP's 0.001), square
``n x n``; ``k = round(0.3 · nnzb)`` blocks grown (RigL's ζ = 0.3 at its
first update); inputs and output gradients are random normals of 128 rows
(a batch). Both rules choose the same positions (tested); the check here is
that they agree on this layer too.

Usage: python benchmarks/rigl_growth.py --widths=4096,16384 \
         --out=benchmarks/cpu/rigl_growth_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one(impl: str, n: int, density: float, seed: int) -> dict:
  import numpy as np
  from snn_jax import topology
  t = topology.make("erdos_renyi", n, n, density=density, seed=seed)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(128, n)).astype(np.float32)
  dy = rng.normal(size=(128, n)).astype(np.float32)
  k = int(round(0.3 * t.nnzb))
  if impl == "host":
    sys.path.insert(0, ROOT)
    from tests.sparse_training.host_oracle import grow_by_gradient
    t0 = time.perf_counter()
    rows, cols = grow_by_gradient(t.rows, t.cols, x, dy, k, 1)
    seconds = time.perf_counter() - t0
    compile_s = 0.0
  else:
    import jax
    import jax.numpy as jnp
    from snn_jax.sparse import block_metadata
    from snn_jax.sparse_training import grow_by_gradient
    meta = block_metadata(t.rows, t.cols, n, n)
    args = [jnp.asarray(a) for a in (x, dy, meta["row_idx"], meta["col_idx"],
                                      meta["row_ptr"])]
    fn = jax.jit(lambda *a: grow_by_gradient(*a, 1, k))
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, cols = jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - t0
    order = np.lexsort((np.asarray(cols), np.asarray(rows)))
    rows, cols = np.asarray(rows)[order], np.asarray(cols)[order]
  digest = int(np.sum(np.asarray(rows, np.int64) * n + np.asarray(cols)) %
               (1 << 61))
  return {"impl": impl, "n": n, "density": density, "nnzb": int(t.nnzb),
          "k": k, "seconds": seconds, "compile_seconds": compile_s,
          "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
          / 1e6, "choice_digest": digest}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--widths", default="4096,16384")
  p.add_argument("--density", type=float, default=0.001)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="out/rigl_growth.json")
  p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.one:
    print(json.dumps(_one(a.one[0], int(a.one[1]), a.density, a.seed)))
    return
  rows = []
  for n in (int(w) for w in a.widths.split(",")):
    for impl in ("host", "device"):
      out = subprocess.run([sys.executable, __file__, "--one", impl, str(n),
                            f"--density={a.density}", f"--seed={a.seed}"],
                           capture_output=True, text=True, check=True,
                           cwd=ROOT).stdout.strip().splitlines()[-1]
      rows.append(json.loads(out))
      print(rows[-1], flush=True)
    host, device = rows[-2], rows[-1]
    device["same_choice_as_host"] = (device["choice_digest"]
                                     == host["choice_digest"])
    device["device_over_host"] = device["seconds"] / host["seconds"]
  commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                          text=True, cwd=ROOT).stdout.strip()
  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), platform.processor())
  os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
  with open(a.out, "w") as f:
    json.dump({"rows": rows, "commit": commit, "cpu_model": cpu,
               "cpu_count": os.cpu_count(),
               "data": "random normal inputs and output gradients, 128 rows",
               }, f, indent=1)


if __name__ == "__main__":
  main()
