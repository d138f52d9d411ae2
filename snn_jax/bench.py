"""Kernel benchmark grid: block-sparse implementations against dense and
other sparse formats (the library behind ``experiments/bench_kernels.py``).

One row per measurement (flat dict; CSV and JSON carry the same thing):

  device_kind, platform, jax, jaxlib, snn_jax, git_sha, date,
  op (fwd|dx|dw|fwd_bwd),
  impl (native_cpu|xla|csr_cpu|pallas|mosaic_gpu|dense|bcoo|bcsr|scipy),
  n_in, n_out, batch, density, block_size, nnzb, dtype,
  median_ms, p10_ms, p90_ms, repeats, dense_ms, ideal_ms (= density x
  dense_ms), floor_ms (the time to read the op's dense input and write its
  dense output once: a jitted elementwise copy of those sizes, timed in the
  same run -- no kernel can beat it, and at low density it is above
  ideal), ratio_to_ideal, ratio_to_floor, speedup_vs_dense, tflops_nnz
  (= 2 batch nnzb bs^2 / t), max_rel_err (from the verify step), note.

Every implementation is verified against the dense product on the same
inputs before it is timed; one that disagrees is reported with its error and
not timed. The tolerance follows the platform's default float32 matmul
precision, which the accelerator kernels and the dense baseline share:
float32 operands are read as tf32 on GPU (Triton's ``dot``, Mosaic's
wgmma, cuBLAS) and in bfloat16 passes on TPU.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax import topology
from snn_jax.kernels import (csr_cpu, mosaic_gpu, native_cpu, pallas_gpu,
                             pallas_tpu, tuning, xla)
from snn_jax.ops import bsmm, resolve_impl, target_device
from snn_jax.utils import device_info, time_fn, versions

OPS = ("fwd", "dx", "dw", "fwd_bwd")
IMPLS = ("native_cpu", "xla", "csr_cpu", "pallas", "mosaic_gpu", "dense",
         "bcoo", "bcsr", "scipy")
# normwise relative error allowed, by (platform, dtype): see module doc
_VERIFY_TOL = {("cpu", "float32"): 1e-4, ("gpu", "float32"): 5e-3,
               ("tpu", "float32"): 3e-2}
_BF16_TOL = 3e-2


def verify_tolerance(platform: str, dtype_name: str) -> float:
  """The largest normwise relative error a verified kernel may show."""
  if dtype_name == "bfloat16":
    return _BF16_TOL
  return _VERIFY_TOL.get((platform, dtype_name), _VERIFY_TOL[("cpu", "float32")])


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  sizes: Sequence[int] = (4096,)
  batches: Sequence[int] = (256,)
  densities: Sequence[float] = (0.1, 0.01)
  block_sizes: Sequence[int] = (1, 32, 128)
  dtypes: Sequence[str] = ("float32",)
  impls: Sequence[str] = ("xla", "dense", "bcoo", "scipy")
  ops: Sequence[str] = OPS
  repeats: int = 7
  min_seconds: float = 0.5
  topology: str = "erdos_renyi"
  seed: int = 0


def _rel_err(out, ref) -> float:
  o = np.asarray(jnp.asarray(out, jnp.float32))
  r = np.asarray(jnp.asarray(ref, jnp.float32))
  return float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-30))


def _problem(n, batch, density, bs, dtype, cfg):
  t = topology.make(cfg.topology, n, n, density=density, block_size=bs,
                    seed=cfg.seed)
  rng = np.random.default_rng(cfg.seed)
  vals = jnp.asarray(rng.standard_normal((t.nnzb, bs, bs), np.float32), dtype)
  # On the device once: a BlockCSR's index arrays are host arrays, which a
  # jitted call would otherwise copy over on every call.
  w = jax.device_put(t.to_bcsr(values=vals))
  x = jnp.asarray(rng.standard_normal((batch, n), np.float32), dtype)
  dy = jnp.asarray(rng.standard_normal((batch, n), np.float32), dtype)
  return t, w, x, dy


def _bsmm_fns(w, impl) -> dict[str, Callable]:
  """Jitted functions for each op of our kernels (through the public API for
  fwd_bwd; the kernel entry points for the single ops)."""
  target = target_device()
  backend = target.platform
  # csr_cpu is a baseline outside bsmm: its fwd_bwd composes its kernels.
  kind = impl if impl == "csr_cpu" else resolve_impl(
      impl, w.block_size, backend, w.nnzb / (w.n_row_blocks * w.n_col_blocks))
  n_in, n_out = w.shape
  bs = w.block_size
  if kind in ("xla", "csr_cpu"):
    strat = tuning.xla_strategy(bs, w.nnzb)
    chunk = tuning.xla_chunk(bs, w.nnzb)
    dw = jax.jit(lambda x, dy, w: xla.sddmm_xla(  # csr_cpu's dW is XLA's too
        x, dy, w.row_idx, w.col_idx, block_size=bs, strategy=strat,
        chunk=chunk, out_dtype=w.values.dtype))
  if kind == "xla":
    fwd = jax.jit(lambda x, w: xla.bsmm_fwd_xla(
        x, w.values, w.row_idx, w.col_idx, w.col_order, n_out=n_out,
        strategy=strat, chunk=chunk))
    dx = jax.jit(lambda dy, w: xla.bsmm_dx_xla(
        dy, w.values, w.row_idx, w.col_idx, n_in=n_in, strategy=strat,
        chunk=chunk))
  elif kind == "csr_cpu":
    fwd = jax.jit(lambda x, w: csr_cpu.bsmm_fwd_csr_cpu(
        x, w.values, w.row_idx, w.col_ptr, w.col_order, n_out=n_out))
    dx = jax.jit(lambda dy, w: csr_cpu.bsmm_dx_csr_cpu(
        dy, w.values, w.col_idx, w.row_ptr, n_in=n_in))
    fwd_bwd = jax.jit(lambda x, dy, w: (fwd(x, w), (dx(dy, w), dw(x, dy, w))))
  elif kind == "native_cpu":
    fwd = jax.jit(lambda x, w: native_cpu.bsmm_fwd_native(
        x, w.values, w.row_idx, w.col_ptr, w.col_order, n_out=n_out))
    dx = jax.jit(lambda dy, w: native_cpu.bsmm_dx_native(
        dy, w.values, w.row_ptr, w.col_idx, n_in=n_in))
    dw = jax.jit(lambda x, dy, w: native_cpu.sddmm_native(
        x, dy, w.row_idx, w.col_idx, block_size=bs, out_dtype=w.values.dtype))
  elif kind == "pallas_gpu":
    t = tuning.gpu_tiles(target.device_kind, bs, jnp.dtype(w.values.dtype).name)
    kw = dict(batch_tile=t.batch_tile, num_warps=t.num_warps,
              num_stages=t.num_stages)
    fwd = jax.jit(lambda x, w: pallas_gpu.bsmm_fwd_pallas(
        x, w.values, w.col_ptr, w.col_order, w.row_idx, n_out=n_out, **kw))
    dx = jax.jit(lambda dy, w: pallas_gpu.bsmm_dx_pallas(
        dy, w.values, w.row_ptr, w.col_idx, n_in=n_in, **kw))
    dw = jax.jit(lambda x, dy, w: pallas_gpu.sddmm_pallas(
        x, dy, w.row_idx, w.col_idx, block_size=bs,
        out_dtype=w.values.dtype, **kw))
  elif kind == "pallas_tpu":
    kw = dict(batch_tile=tuning.tpu_batch_tile(
        target.device_kind, bs, jnp.dtype(w.values.dtype).name))
    fwd = jax.jit(lambda x, w: pallas_tpu.bsmm_fwd_pallas_tpu(
        x, w.values, w.col_ptr, w.col_order, w.row_idx, n_out=n_out, **kw))
    dx = jax.jit(lambda dy, w: pallas_tpu.bsmm_dx_pallas_tpu(
        dy, w.values, w.row_ptr, w.col_idx, n_in=n_in, **kw))
    dw = jax.jit(lambda x, dy, w: pallas_tpu.sddmm_pallas_tpu(
        x, dy, w.row_idx, w.col_idx, block_size=bs,
        out_dtype=w.values.dtype, **kw))
  elif kind == "mosaic_gpu":  # forward only; fwd_bwd runs the paired backward
    if not mosaic_gpu.supports(bs):  # a ValueError row: "unsupported"
      raise ValueError(f"the Mosaic GPU kernel takes block sizes "
                       f"{mosaic_gpu.BLOCK_SIZES}, got {bs}")
    fwd = jax.jit(lambda x, w: mosaic_gpu.bsmm_fwd_mosaic(
        x, w.values, w.col_ptr, w.col_order, w.row_idx, n_out=n_out))
    dx = dw = None
  else:
    raise ValueError(f"no kernel benchmark for impl {impl!r}")

  if kind != "csr_cpu":
    @jax.jit
    def fwd_bwd(x, dy, w):
      y, vjp = jax.vjp(lambda x, v: bsmm(x, w.replace(values=v), impl=impl),
                       x, w.values)
      return y, vjp(dy)

  fns = {"fwd": lambda x, dy, w: fwd(x, w), "fwd_bwd": fwd_bwd}
  if dx is not None:
    fns.update(dx=lambda x, dy, w: dx(dy, w), dw=dw)
  return fns


_FLOOR = jax.jit(lambda x: x * 2)  # reads x once, writes one array its size


def _dense_fns() -> dict[str, Callable]:
  hi = jax.lax.Precision.DEFAULT
  fwd = jax.jit(lambda x, wd: jnp.dot(x, wd, precision=hi))
  dx = jax.jit(lambda dy, wd: jnp.dot(dy, wd.T, precision=hi))
  dw = jax.jit(lambda x, dy: jnp.dot(x.T, dy, precision=hi))

  @jax.jit
  def fwd_bwd(x, dy, wd):
    y, vjp = jax.vjp(lambda x, wd: jnp.dot(x, wd, precision=hi), x, wd)
    return y, vjp(dy)

  return {"fwd": lambda x, dy, wd: fwd(x, wd), "dx": lambda x, dy, wd: dx(dy, wd),
          "dw": lambda x, dy, wd: dw(x, dy), "fwd_bwd": fwd_bwd}


def _jax_sparse_fns(fmt: str) -> dict[str, Callable]:
  """jax.experimental.sparse baselines. BCOO multiplies as the right operand
  directly; BCSR only supports a sparse *left* operand, so it stores W.T and
  W and computes ``x @ W = (W.T @ x.T).T`` and ``dy @ W.T = (W @ dy.T).T``."""
  from jax.experimental import sparse as jsp

  if fmt == "bcoo":
    fwd = jax.jit(lambda x, ws: x @ ws)
    dx = jax.jit(lambda dy, ws: dy @ ws.T)

    def _fb(x, dy, ws):
      f = lambda x, data: x @ jsp.BCOO((data, ws.indices), shape=ws.shape)
      y, vjp = jax.vjp(f, x, ws.data)
      return y, vjp(dy)

    return {"make": jsp.BCOO.fromdense, "fwd": lambda x, dy, ws: fwd(x, ws),
            "dx": lambda x, dy, ws: dx(dy, ws), "fwd_bwd": jax.jit(_fb)}

  fwd = jax.jit(lambda x, wt: (wt @ x.T).T)
  dx = jax.jit(lambda dy, w: (w @ dy.T).T)

  def _fb_csr(x, dy, pair):
    wt, _ = pair
    def f(x, data):
      m = jsp.BCSR((data, wt.indices, wt.indptr), shape=wt.shape)
      return (m @ x.T).T
    y, vjp = jax.vjp(f, x, wt.data)
    return y, vjp(dy)

  return {"make": lambda wd: (jsp.BCSR.fromdense(wd.T), jsp.BCSR.fromdense(wd)),
          "fwd": lambda x, dy, pair: fwd(x, pair[0]),
          "dx": lambda x, dy, pair: dx(dy, pair[1]), "fwd_bwd": jax.jit(_fb_csr)}


def _scipy_fns():
  import scipy.sparse as sp

  def make(wd):
    return sp.csr_matrix(np.asarray(wd, np.float32))

  return {"make": make,
          "fwd": lambda x, dy, ws: np.asarray(x) @ ws,
          "dx": lambda x, dy, ws: (ws @ np.asarray(dy).T).T}


def run_grid(cfg: BenchConfig, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Runs the benchmark grid; returns the rows (see module docstring)."""
  unknown = set(cfg.impls) - set(IMPLS)
  if unknown:
    raise ValueError(f"unknown impls {sorted(unknown)}; known: {IMPLS}")
  bad_ops = set(cfg.ops) - set(OPS)
  if bad_ops:
    raise ValueError(f"unknown ops {sorted(bad_ops)}; known: {OPS}")
  meta = {**device_info(), **versions()}
  platform = target_device().platform
  rows = []
  dense_fns = _dense_fns()
  for n, batch, dtype_name in itertools.product(cfg.sizes, cfg.batches, cfg.dtypes):
    dtype = jnp.dtype(dtype_name)
    for density, bs in itertools.product(cfg.densities, cfg.block_sizes):
      # Dense and the floor are re-timed at every grid point, next to the
      # kernels they are compared with: on a noisy machine one early
      # measurement would skew every ratio of the run.
      dense_stats: dict[str, dict[str, float]] = {}
      if n % bs:
        continue
      try:
        t, w, x, dy = _problem(n, batch, density, bs, dtype, cfg)
      except ValueError as e:
        log(f"skip n={n} bs={bs} density={density}: {e}")
        continue
      wd = w.to_dense()
      refs = {}
      hi = jax.lax.Precision.HIGHEST
      refs["fwd"] = jnp.dot(x, wd, precision=hi, preferred_element_type=jnp.float32)
      refs["dx"] = jnp.dot(dy, wd.T, precision=hi, preferred_element_type=jnp.float32)
      full_dw = jnp.dot(x.T, dy, precision=hi, preferred_element_type=jnp.float32)
      refs["dw"] = full_dw.reshape(n // bs, bs, n // bs, bs).transpose(
          0, 2, 1, 3)[w.row_idx, w.col_idx]
      del full_dw
      base = dict(meta, n_in=n, n_out=n, batch=batch, density=t.density,
                  requested_density=density, block_size=bs, nnzb=t.nnzb,
                  dtype=dtype_name)
      for op in cfg.ops:
        if op not in dense_stats:
          dense_stats[op] = time_fn(dense_fns[op], x, dy, wd,
                                    repeats=cfg.repeats,
                                    min_seconds=cfg.min_seconds)
      dense_ms = {op: st["median_ms"] for op, st in dense_stats.items()}
      if "floor" not in dense_stats:  # read x, write y (n_in = n_out here)
        dense_stats["floor"] = time_fn(_FLOOR, x, repeats=cfg.repeats,
                                       min_seconds=cfg.min_seconds)
      floor_ms = dense_stats["floor"]["median_ms"]
      for impl in cfg.impls:
        for op in cfg.ops:
          row = dict(base, op=op, impl=impl, dense_ms=dense_ms[op],
                     ideal_ms=t.density * dense_ms[op], floor_ms=floor_ms,
                     note="")
          if impl == "dense":  # The baseline itself, timed at this point.
            row.update(dense_stats[op], ratio_to_ideal=1 / t.density,
                       speedup_vs_dense=1.0, note="dense jnp.dot baseline")
            rows.append(row)
            continue
          try:
            fn, arg = _impl_fn(impl, op, w, wd)
          except (ValueError, NotImplementedError) as e:
            row.update(median_ms=None, note=f"unsupported: {e}")
            rows.append(row)
            continue
          if fn is None:
            continue
          try:
            out = fn(x, dy, arg)
            if op in refs:
              row["max_rel_err"] = _rel_err(out, refs[op])
              if row["max_rel_err"] > verify_tolerance(platform,
                                                       dtype_name):
                row.update(median_ms=None, note="wrong result: not timed")
                rows.append(row)
                log(f"WRONG {impl} {op} n={n} bs={bs} d={density}: "
                    f"rel err {row['max_rel_err']:.3g}")
                continue
            stats = time_fn(fn, x, dy, arg, repeats=cfg.repeats,
                            min_seconds=cfg.min_seconds)
          except Exception as e:  # a format's missing op is reported, not hidden
            row.update(median_ms=None, note=f"failed: {type(e).__name__}: {str(e)[:120]}")
            rows.append(row)
            continue
          row.update(stats)
          ms = stats["median_ms"]
          row["ratio_to_ideal"] = ms / row["ideal_ms"]
          row["ratio_to_floor"] = ms / floor_ms
          row["speedup_vs_dense"] = dense_ms[op] / ms
          row["tflops_nnz"] = 2 * batch * t.nnzb * bs * bs / (ms * 1e-3) / 1e12 * (
              2 if op == "fwd_bwd" else 1)
          rows.append(row)
          log(f"n={n} B={batch} bs={bs:>3} d={t.density:.4f} {impl:>6} {op:>7}: "
              f"{ms:8.3f} ms  (dense {dense_ms[op]:.3f}, x{row['ratio_to_ideal']:.2f} ideal)")
  return rows


def _impl_fn(impl, op, w, wd):
  """(function(x, dy, arg), arg) for one implementation and op; (None, None)
  when the combination is not measured (e.g. scipy has no SDDMM)."""
  if impl == "dense":
    return _dense_fns()[op], wd
  if impl == "csr_cpu" and (w.block_size != 1 or jax.default_backend() != "cpu"):
    raise NotImplementedError("csr_cpu is block size 1 on CPU only")
  if impl == "native_cpu" and (jax.default_backend() != "cpu"
                               or not native_cpu.AVAILABLE):
    raise NotImplementedError("native_cpu runs on a CPU backend where built")
  if impl in ("pallas", "mosaic_gpu") and jax.default_backend() == "cpu":
    raise NotImplementedError("Pallas runs only in interpret mode on CPU; not timed")
  if impl == "mosaic_gpu" and jax.default_backend() != "gpu":
    raise NotImplementedError("mosaic_gpu runs on GPU (Hopper and newer) only")
  if impl in ("xla", "csr_cpu", "native_cpu", "pallas", "mosaic_gpu"):
    fns = _bsmm_fns(w, impl)
    if op not in fns:
      return None, None  # e.g. the forward-only Mosaic kernel's dX
    return fns[op], w
  if impl in ("bcoo", "bcsr"):
    fns = _jax_sparse_fns(impl)
    if op not in fns:
      return None, None
    return fns[op], fns["make"](wd)
  if impl == "scipy":
    if jax.default_backend() != "cpu" or op not in ("fwd", "dx"):
      return None, None
    fns = _scipy_fns()
    return fns[op], fns["make"](wd)
  raise ValueError(impl)


def summary_table(rows: list[dict[str, Any]]) -> str:
  """Text table: one line per (n, batch, bs, density, op) with each impl's
  median ms and ratio to ideal."""
  from snn_jax.analysis import format_table

  keyed: dict[tuple, dict[str, Any]] = {}
  impls: list[str] = []
  for r in rows:
    k = (r["n_in"], r["batch"], r["block_size"], round(r["density"], 5), r["dtype"], r["op"])
    e = keyed.setdefault(k, {"n": r["n_in"], "batch": r["batch"], "bs": r["block_size"],
                             "density": r["density"], "dtype": r["dtype"], "op": r["op"],
                             "dense_ms": r["dense_ms"], "ideal_ms": r["ideal_ms"],
                             "floor_ms": r.get("floor_ms")})
    if r["impl"] not in impls:
      impls.append(r["impl"])
    ms = r.get("median_ms")
    e[f"{r['impl']}_ms"] = ms if ms is not None else "n/a"
    if ms is not None and r["impl"] != "dense":
      e[f"{r['impl']}_x_ideal"] = r["ratio_to_ideal"]
  cols = ["n", "batch", "bs", "density", "dtype", "op", "dense_ms", "ideal_ms",
          "floor_ms"]
  for i in impls:
    if i != "dense":
      cols += [f"{i}_ms", f"{i}_x_ideal"]
  return format_table(list(keyed.values()), cols)


def plot_speedup(rows: list[dict[str, Any]], path: str, op: str = "fwd") -> None:
  """Speedup over dense against density, one panel per block size, with the
  ideal 1/density line."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sel = [r for r in rows if r["op"] == op and r.get("median_ms") and r["impl"] != "dense"]
  if not sel:
    return
  block_sizes = sorted({r["block_size"] for r in sel})
  fig, axes = plt.subplots(1, len(block_sizes), figsize=(4 * len(block_sizes), 3.6),
                           squeeze=False)
  # One colour per implementation across all panels.
  colours = {impl: f"C{i}" for i, impl in enumerate(sorted({r["impl"] for r in sel}))}
  for ax, bs in zip(axes[0], block_sizes):
    pts = [r for r in sel if r["block_size"] == bs]
    for impl in sorted({r["impl"] for r in pts}):
      rr = sorted((r for r in pts if r["impl"] == impl), key=lambda r: r["density"])
      ax.plot([r["density"] for r in rr], [r["speedup_vs_dense"] for r in rr],
              "o-", label=impl, color=colours[impl])
    ds = np.array(sorted({r["density"] for r in pts}))
    ax.plot(ds, 1 / ds, "k--", label="ideal 1/density")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("density")
    ax.set_title(f"block {bs}, {op}")
  axes[0][0].set_ylabel("speedup over dense")
  labels: dict[str, Any] = {}  # one legend for every implementation of any panel
  for ax in axes[0]:
    for h, l in zip(*ax.get_legend_handles_labels()):
      labels.setdefault(l, h)
  fig.legend(list(labels.values()), list(labels), loc="center right", fontsize=8)
  fig.suptitle("speedup over dense jnp.dot (dense time / kernel time); "
               "dashed: the ideal 1/density", fontsize=9)
  fig.tight_layout(rect=(0, 0, 0.88, 0.95))
  fig.savefig(path, dpi=110)
  plt.close(fig)
