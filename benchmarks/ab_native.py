"""Two builds of the native CPU kernels side by side in one process.

On a noisy machine, two benchmark runs minutes apart differ by more than
most kernel changes do; this loads two compiled ``_native_cpu`` modules
(e.g. the installed one and one built from another commit), registers each
under its own FFI target names, checks that they give the same bits, and
times them interleaved (best of 8 rounds) on the block-size-1 shapes that
matter here: the SET-MLP's 1000 x 1000 layer at batch 128 and the kernel
grid's 4096 x 4096 at batch 256, densities 0.01 and 0.1.

  cp snn_jax/kernels/_native_cpu*.so /tmp/before.so   # then rebuild
  python benchmarks/ab_native.py /tmp/before.so \
      snn_jax/kernels/_native_cpu*.so benchmarks/cpu/ab_native_<date>.json
"""

import importlib.util
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.sparse import BlockCSR
from snn_jax.utils.env import device_info, versions

SHAPES = ((1000, 128, 0.04), (4096, 256, 0.01), (4096, 256, 0.1))  # n, batch, density
ROUNDS = 8


def _load(tag: str, path: str) -> None:
  spec = importlib.util.spec_from_file_location(f"{tag}._native_cpu", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name, capsule in module.handlers().items():
    jax.ffi.register_ffi_target(f"{tag}_{name}", capsule, platform="cpu")


def _ops(tag, w, batch):
  n_in, n_out = w.shape
  call = lambda name, shape: jax.ffi.ffi_call(
      f"{tag}_snn_jax_{name}", jax.ShapeDtypeStruct(shape, jnp.float32))
  return {
      "fwd": jax.jit(lambda x, dy, v: call("bsmm_fwd", (batch, n_out))(
          x, v, w.row_idx, w.col_ptr, w.col_order)),
      "dx": jax.jit(lambda x, dy, v: call("bsmm_dx", (batch, n_in))(
          dy, v, w.row_ptr, w.col_idx)),
      "dw": jax.jit(lambda x, dy, v: call("bsmm_dw", v.shape)(
          x, dy, w.row_idx, w.col_idx)),
  }


def main(before: str, after: str, output: str) -> None:
  builds = {"before": before, "after": after}
  for tag, path in builds.items():
    _load(tag, path)
  rng = np.random.default_rng(0)
  rows = []
  for n, batch, density in SHAPES:
    mask = rng.random((n, n)) < density
    w = BlockCSR.from_dense(jnp.asarray(mask * rng.standard_normal((n, n)),
                                        jnp.float32), 1)
    x = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
    ops = {tag: _ops(tag, w, batch) for tag in builds}
    reps = max(1, int(2e8 / (w.nnzb * batch)))
    for op in ("fwd", "dx", "dw"):
      outs = [np.asarray(ops[tag][op](x, dy, w.values)) for tag in builds]
      if not np.array_equal(outs[0], outs[1]):
        raise SystemExit(f"{op} at n={n}: the two builds give different bits")
      best = dict.fromkeys(builds, np.inf)
      for _ in range(ROUNDS):
        for tag in builds:
          f = ops[tag][op]
          t0 = time.perf_counter()
          for _ in range(reps):
            f(x, dy, w.values).block_until_ready()
          best[tag] = min(best[tag], (time.perf_counter() - t0) / reps * 1e3)
      row = {"n": n, "batch": batch, "density": float(density), "op": op,
             "before_ms": best["before"], "after_ms": best["after"],
             "after_over_before": best["after"] / best["before"]}
      rows.append(row)
      print(f"n={n:5d} batch={batch:4d} d={density:<5} {op:>3}: before "
            f"{best['before']:7.3f} ms  after {best['after']:7.3f} ms  "
            f"after/before {row['after_over_before']:.2f}")
  with open(output, "w") as f:
    json.dump({"before": before, "after": after, "rounds": ROUNDS, "rows": rows,
               **{f"device_{k}": v for k, v in device_info().items()},
               **{f"version_{k}": v for k, v in versions().items()}}, f, indent=1)
  print(f"wrote {output}")


if __name__ == "__main__":
  if len(sys.argv) != 4:
    raise SystemExit(__doc__)
  main(*sys.argv[1:])
