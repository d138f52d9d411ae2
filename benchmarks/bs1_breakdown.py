"""Where a block-size-1 call's time goes: the native kernels alone against
the whole op, at the shapes of ``benchmarks/peers.py``, against this
machine's bound.

``benchmarks/peers.py`` times ``snn_jax.ops.bsmm`` as a user calls it:
batch-major ``X[batch, n]`` in, ``Y[batch, n]`` out. At block size 1 the
native kernels work on feature-major operands (``X^T``: one contiguous
row of ``batch`` lanes per input feature), so a standalone call pays XLA's
layout changes around the kernel; inside a network they fuse into the
neighbouring ops. This splits the two, in one process, timed interleaved:

* ``op_fwd`` / ``op_train``: the op as ``peers.py`` times it (``bsmm``,
  ``impl="native_cpu"``, jitted; ``train`` is its vjp);
* ``kernel_fwd`` / ``kernel_dx`` / ``kernel_dw``: the native kernel alone,
  its dense operands handed over resident in the kernel's layout (a
  bitcast, no copy; checked in the compiled HLO) and one row of its output
  returned (so XLA copies 1 row, not the output);
* ``layout_in``: XLA's copy of ``X`` into the feature-major layout, the
  cost the op adds in front of the forward (and of dX, dW: each gathers
  from one such operand);
* ``kernel_fwd_batch_major``: the forward kernel called on batch-major
  ``X`` and returning batch-major ``Y``, transposing both itself (8 x 8
  vector tiles) -- what the op would cost standalone without asking XLA
  for the layout.

Every ``kernel_*`` output is checked against a float64 reference first.
Each row is the median of ``--rounds`` rounds, each round the best of 5
calls of every measurement in turn. ``bound_ms`` comes from
``--roofline`` (``benchmarks/roofline_probe.py``'s JSON: the gathered rows
read from L2, the FMA peak); ``fraction_of_bound`` is bound / measured.

Usage: python benchmarks/bs1_breakdown.py \\
         --roofline=benchmarks/cpu/roofline_<date>.json \\
         --out=benchmarks/cpu/bs1_breakdown_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the same problem, drawn the same way)

from snn_jax.kernels import native_cpu  # noqa: E402
from snn_jax.ops import bsmm  # noqa: E402
from snn_jax.sparse import BlockCSR  # noqa: E402
from snn_jax.utils.env import device_info, versions  # noqa: E402

CALLS = 5


def _kernels(w: BlockCSR):
  """The three kernels on resident feature-major operands (``[n, batch]``
  row-major arrays), each returning its output's first row only (``Y``'s
  and ``dX``'s first example, ``dW``'s first stored weight)."""
  n_in, n_out = w.shape

  def fwd(xt, dyt, v):
    y = native_cpu.bsmm_fwd_native(xt.T, v, w.row_idx, w.col_ptr, w.col_order,
                                   n_out=n_out, feature_major_operands=True)
    return y[:1]

  def dx(xt, dyt, v):
    g = native_cpu.bsmm_dx_native(dyt.T, v, w.row_ptr, w.col_idx, n_in=n_in,
                                  feature_major_operands=True)
    return g[:1]

  def dw(xt, dyt, v):
    return native_cpu.sddmm_native(xt.T, dyt.T, w.row_idx, w.col_idx,
                                   block_size=1, out_dtype=v.dtype,
                                   feature_major_operands=True)[:1]

  return {"kernel_fwd": jax.jit(fwd), "kernel_dx": jax.jit(dx),
          "kernel_dw": jax.jit(dw)}


def _no_layout_copy(fn, *args) -> None:
  """The dense operands reach the custom call as a bitcast: the compiled
  module copies or transposes nothing but the one returned row."""
  text = fn.lower(*args).compile().as_text()
  entry = text[text.index("\nENTRY"):]
  for line in entry.splitlines()[1:]:
    if any(op in line for op in (" transpose(", " copy(", " fusion(")):
      if " = f32[1," not in line:
        raise SystemExit("the resident operands were copied, the kernel "
                         f"timing would include a layout change:\n{line}")
  if " bitcast(" not in entry:
    raise SystemExit(f"no bitcast of the resident operands in:\n{entry}")


def _best_of(fn, args) -> float:
  best = np.inf
  for _ in range(CALLS):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best * 1e3


def _point(n: int, batch: int, density: float, rounds: int,
           bound: dict | None) -> dict:
  rows, cols, vals, x, dy = peers._problem(n, batch, density)
  w = jax.device_put(BlockCSR.from_coo(rows, cols, shape=(n, n), block_size=1,
                                      values=vals.reshape(-1, 1, 1)))
  # from_coo keeps the sorted order peers._problem gives: check it.
  np.testing.assert_array_equal(np.asarray(w.row_idx), rows)
  np.testing.assert_array_equal(np.asarray(w.col_idx), cols)
  xj, dyj = jnp.asarray(x), jnp.asarray(dy)
  xt, dyt = jnp.asarray(np.ascontiguousarray(x.T)), jnp.asarray(
      np.ascontiguousarray(dy.T))
  kernels = _kernels(w)
  for fn in kernels.values():
    _no_layout_copy(fn, xt, dyt, w.values)

  ref_y, ref_dx, ref_dw = peers._reference(rows, cols, vals, x, dy, n)
  got = {"kernel_fwd": (kernels["kernel_fwd"], ref_y[:1]),
         "kernel_dx": (kernels["kernel_dx"], ref_dx[:1]),
         "kernel_dw": (kernels["kernel_dw"], ref_dw.reshape(-1, 1, 1)[:1])}
  errors = {}
  for name, (fn, ref) in got.items():
    out = np.asarray(fn(xt, dyt, w.values), np.float64).reshape(ref.shape)
    errors[name] = peers._rel_err(out, ref)
    if errors[name] > peers.TOLERANCE:
      raise SystemExit(f"{name} at {n}/{batch}/{density}: relative error "
                       f"{errors[name]:.2e} against the float64 reference")

  op_fwd = jax.jit(lambda x, w: bsmm(x, w, impl="native_cpu"))

  @jax.jit
  def op_train(x, values, dy):
    y, pull = jax.vjp(lambda x, v: bsmm(x, w.replace(values=v),
                                        impl="native_cpu"), x, values)
    return y, *pull(dy)

  layout_in = jax.jit(lambda x: x.T)
  fwd_batch_major = jax.jit(lambda x, v: native_cpu.bsmm_fwd_native(
      x, v, w.row_idx, w.col_ptr, w.col_order, n_out=n))
  np.testing.assert_array_equal(np.asarray(fwd_batch_major(xj, w.values)),
                                np.asarray(op_fwd(xj, w)))
  timed = {
      "op_fwd": (op_fwd, (xj, w)),
      "kernel_fwd_batch_major": (fwd_batch_major, (xj, w.values)),
      "op_train": (op_train, (xj, w.values, dyj)),
      **{name: (fn, (xt, dyt, w.values)) for name, fn in kernels.items()},
      "layout_in": (layout_in, (xj,)),
  }
  for fn, args in timed.values():
    jax.block_until_ready(fn(*args))
  per_round = {name: [] for name in timed}
  for r in range(rounds):
    order = list(timed) if r % 2 == 0 else list(reversed(timed))
    for name in order:
      fn, args = timed[name]
      per_round[name].append(_best_of(fn, args))
  ms = {name: statistics.median(v) for name, v in per_round.items()}
  row = {"n": n, "batch": batch, "density": density, "nnz": int(rows.size),
         "ms": ms, "round_ms": per_round, "kernel_rel_err": errors,
         "kernels_sum_train_ms": ms["kernel_fwd"] + ms["kernel_dx"] + ms["kernel_dw"]}
  if bound is not None:
    b = bound["bound_ms"]
    row["bound_ms"] = {k: b[k] for k in ("fwd", "dx", "dw", "train")}
    row["fraction_of_bound"] = {
        "op_fwd": b["fwd"] / ms["op_fwd"], "op_train": b["train"] / ms["op_train"],
        "kernel_fwd": b["fwd"] / ms["kernel_fwd"],
        "kernel_dx": b["dx"] / ms["kernel_dx"],
        "kernel_dw": b["dw"] / ms["kernel_dw"],
        "kernels_train": b["train"] / row["kernels_sum_train_ms"]}
  return row


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--shapes", default=peers.DEFAULT_SHAPES,
                 help="n:batch:density,... (default: peers.py's)")
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--roofline", default=None,
                 help="roofline_probe.py's JSON, for bound_ms")
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  if not native_cpu.AVAILABLE:
    raise SystemExit(f"no native kernels: {native_cpu.UNAVAILABLE_REASON}")
  bounds = {}
  if args.roofline:
    with open(args.roofline) as f:
      for s in json.load(f)["shapes"]:
        bounds[(s["n"], s["batch"], float(s["density"]))] = s
  out_rows = []
  for item in args.shapes.split(","):
    n, batch, density = item.split(":")
    n, batch, density = int(n), int(batch), float(density)
    row = _point(n, batch, density, args.rounds, bounds.get((n, batch, density)))
    out_rows.append(row)
    ms = row["ms"]
    print(f"{n}/{batch}/{density}: " + "  ".join(f"{k} {v:.3f}" for k, v in ms.items())
          + ("  fraction of bound: " + "  ".join(
              f"{k} {v:.2f}" for k, v in row["fraction_of_bound"].items())
             if "fraction_of_bound" in row else ""))
  with open(args.out, "w") as f:
    json.dump({"what": "block-size-1 native kernels alone against the whole op",
               "native_target": native_cpu.TARGET, "rounds": args.rounds,
               "calls_per_round": CALLS, "roofline_file": args.roofline,
               "rows": out_rows,
               **{f"device_{k}": v for k, v in device_info().items()},
               **{f"version_{k}": v for k, v in versions().items()}}, f, indent=1)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
