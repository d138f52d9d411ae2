"""The block-size-1 backward fused (one pass over dY for dX and dW) against
the two kernels apart, side by side in one process.

Three forms of the same ``(dx, dW)`` on feature-major operands, as a
network hands them over (each operand made by a producer fusion, ``dx``
consumed by one): ``separate`` (``bsmm_dx_native`` then ``sddmm_native``:
the backward before the fused kernel), ``one_call_split`` (``bsmm_bwd_native``
with ``fuse=False``: one call, the two kernels inside it) and ``fused``
(``fuse=True``; the default). All three give the same bits (tests/kernels/
test_impls.py). Random Erdős–Rényi weights (seed 0), float32; each row is
the median over ``--groups`` groups of 10 calls, the forms interleaved
group by group.

Usage (repo root; an idle machine): python benchmarks/fused_backward.py
[--out=benchmarks/cpu/fused_backward_<date>.json] [n_in,n_out,batch,density ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.kernels import native_cpu
from snn_jax.sparse import BlockCSR
from snn_jax.utils.env import device_info, versions

# The SET-MLP layers (784 x 1000, 1000 x 1000 at epsilon 20, batch 128),
# the peer benchmark's two shapes, denser and wider ones, and dY of 8 and
# 16 MB (past the L2 cache, where dX's gather slices its lanes).
SHAPES = [(784, 1000, 128, 0.045), (1000, 1000, 128, 0.045),
          (1000, 1000, 256, 0.045), (2048, 2048, 128, 0.02),
          (4096, 4096, 256, 0.01), (4096, 4096, 256, 0.1),
          (16384, 16384, 256, 0.002), (32768, 32768, 128, 0.0005)]


def row(n_in: int, n_out: int, batch: int, density: float, groups: int,
        rng) -> dict:
  dense = np.where(rng.random((n_in, n_out)) < density,
                   rng.standard_normal((n_in, n_out)), 0).astype(np.float32)
  w = BlockCSR.from_dense(dense, block_size=1)
  x = jnp.asarray(rng.standard_normal((batch, n_in)), jnp.float32)
  dy = jnp.asarray(rng.standard_normal((batch, n_out)), jnp.float32)
  fm = dict(feature_major_operands=True)

  @jax.jit
  def separate(x, dy, v):
    x, dy = jnp.tanh(x), jnp.tanh(dy)
    dx = native_cpu.bsmm_dx_native(dy, v, w.row_ptr, w.col_idx, n_in=n_in, **fm)
    dw = native_cpu.sddmm_native(x, dy, w.row_idx, w.col_idx, block_size=1, **fm)
    return jnp.tanh(dx), dw

  def one_call(fuse):
    @jax.jit
    def f(x, dy, v):
      x, dy = jnp.tanh(x), jnp.tanh(dy)
      dx, dw = native_cpu.bsmm_bwd_native(x, dy, v, w.row_ptr, w.col_idx,
                                          w.row_idx, fuse=fuse, **fm)
      return jnp.tanh(dx), dw
    return f

  fns = {"separate": separate, "one_call_split": one_call(False),
         "fused": one_call(True)}
  outs = {k: jax.block_until_ready(f(x, dy, w.values)) for k, f in fns.items()}
  for k in ("one_call_split", "fused"):  # the same bits, or no timing
    for a, b in zip(outs[k], outs["separate"]):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  times = {k: [] for k in fns}
  for _ in range(groups):
    for k, f in fns.items():
      t = time.perf_counter()
      for _ in range(10):
        out = f(x, dy, w.values)
      jax.block_until_ready(out)
      times[k].append((time.perf_counter() - t) / 10 * 1e3)
  ms = {k: float(np.median(v)) for k, v in times.items()}
  return {"n_in": n_in, "n_out": n_out, "batch": batch, "density": density,
          "nnz": int(w.nnz), "dy_feature_major_bytes": n_out * batch * 4,
          **{f"{k}_ms": v for k, v in ms.items()},
          "fused_over_separate": ms["fused"] / ms["separate"],
          "one_call_split_over_separate": ms["one_call_split"] / ms["separate"]}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default="out/fused_backward.json")
  p.add_argument("--groups", type=int, default=15)
  p.add_argument("shapes", nargs="*", help="n_in,n_out,batch,density")
  a = p.parse_args()
  shapes = [tuple(float(v) for v in s.split(",")) for s in a.shapes] or SHAPES
  rng = np.random.default_rng(0)
  rows = []
  for n_in, n_out, batch, density in shapes:
    rows.append(row(int(n_in), int(n_out), int(batch), float(density),
                    a.groups, rng))
    print(json.dumps(rows[-1]), flush=True)
  result = {"what": __doc__.split("\n\n")[0], "rows": rows,
            "environment": {**device_info(), **versions(),
                            "native_target": native_cpu.TARGET,
                            "native_threads": native_cpu.num_threads()}}
  os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
  with open(a.out, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
