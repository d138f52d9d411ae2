"""Where one training step of SET-MLP 784-1000-1000-1000-10 (epsilon 20)
spends its time, against the same MLP dense, side by side in one run.

Issue 15's end-to-end target (a SET epoch >= 4x faster than dense) is
measured by ``set_vs_dense_epoch.sh``; this script splits the step so the
gap can be read: per layer, the native kernels (forward, dX, dW at the
stored weights) against dense ``jnp.dot`` at the same shapes, and per step,
the step as ``fit`` runs it (``nnx.cached_partial`` of the donating step:
the headline), the public ``train_step`` (``nnx.jit``) against the same
step as a plain ``jax.jit`` over split state, ``nnx.cached_partial``,
forward+backward alone, the split-state step with the block-size-1
kernels given batch-major operands (the layout before the ops layer asked
XLA for feature-major ones), and the split-state step with the
block-size-1 backward as two calls, dX and dW apart (before the fused
kernel; per layer, ``native_bwd_fused`` is that kernel alone). Random inputs (batch 128, as the epoch
benchmark); every figure is the best of 5 timed groups, the
implementations interleaved group by group.

Usage (repo root; an idle machine): python benchmarks/set_step_breakdown.py
[output.json]
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snn_jax.kernels import native_cpu
from snn_jax.training import loop
from snn_jax.training.config import TrainConfig
from snn_jax.utils.env import device_info, versions

BATCH = 128
GROUPS = 5


def _interleaved(fns: dict, per_group: int, groups: int = GROUPS,
                 reduce=min) -> dict:
  """``reduce`` (best, by default) over ``groups`` groups of the
  milliseconds per call of each zero-argument function, the functions
  timed in turn within each group."""
  for f in fns.values():
    for _ in range(5):
      r = f()
    jax.block_until_ready(r)
  times = {k: [] for k in fns}
  for _ in range(groups):
    for k, f in fns.items():
      t = time.perf_counter()
      for _ in range(per_group):
        r = f()
      jax.block_until_ready(r)
      times[k].append((time.perf_counter() - t) / per_group * 1e3)
  return {k: float(reduce(v)) for k, v in times.items()}


def _config(sparse: bool) -> TrainConfig:
  flat = dict(dataset="mnist", hidden=(1000, 1000, 1000), batch_size=BATCH)
  if sparse:
    flat.update(density=None, sparse_training="set",
                topology_params={"epsilon": 20, "cap_density": True})
  else:
    flat.update(topology="dense", density=None)
  return TrainConfig.from_flat(flat)


def layer_rows(topologies, rng) -> list[dict]:
  rows = []
  for t in topologies:
    w = t.to_bcsr(jnp.asarray(rng.standard_normal((t.nnzb, 1, 1)), jnp.float32))
    x = jnp.asarray(rng.standard_normal((BATCH, t.n_in)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((BATCH, t.n_out)), jnp.float32)
    dense_w = jnp.asarray(rng.standard_normal((t.n_in, t.n_out)), jnp.float32)
    fwd = jax.jit(lambda x, v, w=w: native_cpu.bsmm_fwd_native(
        x, v, w.row_idx, w.col_ptr, w.col_order, n_out=w.shape[1]))
    dx = jax.jit(lambda dy, v, w=w: native_cpu.bsmm_dx_native(
        dy, v, w.row_ptr, w.col_idx, n_in=w.shape[0]))
    dw = jax.jit(lambda x, dy, w=w: native_cpu.sddmm_native(
        x, dy, w.row_idx, w.col_idx, block_size=1))
    bwd = jax.jit(lambda x, dy, v, w=w: native_cpu.bsmm_bwd_native(
        x, dy, v, w.row_ptr, w.col_idx, w.row_idx))
    d_fwd = jax.jit(lambda x, m: x @ m)
    d_dx = jax.jit(lambda dy, m: dy @ m.T)
    d_dw = jax.jit(lambda x, dy: x.T @ dy)
    ms = _interleaved({
        "native_fwd": lambda: fwd(x, w.values),
        "native_dx": lambda: dx(dy, w.values),
        "native_dw": lambda: dw(x, dy),
        "native_bwd_fused": lambda: bwd(x, dy, w.values),
        "dense_fwd": lambda: d_fwd(x, dense_w),
        "dense_dx": lambda: d_dx(dy, dense_w),
        "dense_dw": lambda: d_dw(x, dy)}, per_group=60)
    rows.append({"n_in": t.n_in, "n_out": t.n_out, "nnz": int(t.nnz),
                 "density": t.nnz / (t.n_in * t.n_out),
                 **{f"{k}_ms": v for k, v in ms.items()}})
  return rows


def _split_state_step(model, opt):
  """The loop's step as a plain ``jax.jit`` over split state: (the jitted
  ``step(state, x, y) -> (state, loss)``, the initial state)."""
  graphdef, state = nnx.split((model, opt))

  @jax.jit
  def step(state, x, y):
    m, o = nnx.merge(graphdef, state)
    (loss, _), g = nnx.value_and_grad(
        lambda m: loop._loss_and_acc(m, x, y), has_aux=True)(m)
    o.update(m, g)
    return nnx.state((m, o)), loss

  return step, state


def step_timers(sparse: bool, rng) -> dict:
  """Zero-argument step functions of one model: the loop's train_step and
  its variants, on 8 rotating random batches."""
  cfg = _config(sparse)
  model = loop.build_model(cfg, loop.build_topologies(cfg, 784, 10))
  tx, _ = loop.make_optimizer(cfg, 469)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  xs = [jnp.asarray(rng.standard_normal((BATCH, 784)), jnp.float32)
        for _ in range(8)]
  ys = [jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32) for _ in range(8)]
  i = [0]

  def batch():
    i[0] = (i[0] + 1) % 8
    return xs[i[0]], ys[i[0]]

  functional_step, state = _split_state_step(model, opt)
  held = [state]

  def run_functional():
    held[0], loss = functional_step(held[0], *batch())
    return loss

  graphdef_m, params = nnx.split(model)

  @jax.jit
  def fwd_bwd(params, x, y):
    return jax.grad(lambda p: loop._loss_and_acc(
        nnx.merge(graphdef_m, p), x, y)[0], allow_int=True)(params)

  cached = nnx.cached_partial(loop.train_step, model, opt)
  # The step as fit() runs it: cached, the model and optimizer donated (a
  # model of its own: donation retires the arrays the other timers hold).
  model_d = loop.build_model(cfg, loop.build_topologies(cfg, 784, 10))
  fit_step = nnx.cached_partial(loop._fit_step, model_d,
                                nnx.Optimizer(model_d, tx, wrt=nnx.Param))
  tag = "set" if sparse else "dense"
  extra = {}
  if sparse:
    def traced_under(name, replacement):
      """The split-state step of a model of its own, traced (and run once)
      with native_cpu.<name> replaced, then timed like the others."""
      model_v = loop.build_model(cfg, loop.build_topologies(cfg, 784, 10))
      step, state_v = _split_state_step(
          model_v, nnx.Optimizer(model_v, tx, wrt=nnx.Param))
      real = getattr(native_cpu, name)
      setattr(native_cpu, name, replacement)
      try:
        held_v = list(step(state_v, *batch()))
        jax.block_until_ready(held_v)
      finally:
        setattr(native_cpu, name, real)

      def run():
        held_v[0], loss = step(held_v[0], *batch())
        return loss
      return run

    def two_calls(x, dy, values, row_ptr, col_idx, row_idx, *, fuse=True,
                  feature_major_operands=False):
      del fuse
      fm = dict(feature_major_operands=feature_major_operands)
      return (native_cpu.bsmm_dx_native(dy, values, row_ptr, col_idx,
                                        n_in=x.shape[1], **fm),
              native_cpu.sddmm_native(x, dy, row_idx, col_idx, block_size=1,
                                      out_dtype=values.dtype, **fm))

    # The block-size-1 kernels given batch-major operands (their transposes
    # inside every call), as before the ops layer asked XLA for
    # feature-major ones; and the block-size-1 backward as two calls, dX
    # and dW apart, as before the fused kernel.
    extra["set_train_step_jax_jit_batch_major_operands"] = traced_under(
        "feature_major", lambda block_size: False)
    extra["set_train_step_jax_jit_two_call_backward"] = traced_under(
        "bsmm_bwd_native", two_calls)
  return {
      f"{tag}_train_step_nnx_jit": lambda: loop.train_step(model, opt,
                                                           *batch())[0],
      f"{tag}_train_step_cached_partial": lambda: cached(*batch())[0],
      f"{tag}_fit_step_cached_donated": lambda: fit_step(*batch())[0],
      f"{tag}_train_step_jax_jit_split_state": run_functional,
      f"{tag}_forward_backward_only": lambda: fwd_bwd(params, *batch()),
      **extra,
  }


def main(out: str) -> None:
  rng = np.random.default_rng(0)
  cfg = _config(True)
  topologies = loop.build_topologies(cfg, 784, 10)
  layers = layer_rows(topologies, rng)
  steps = _interleaved({**step_timers(True, rng), **step_timers(False, rng)},
                       per_group=40)
  result = {
      "what": __doc__.split("\n\n")[0],
      "batch": BATCH, "layers": layers, "steps_ms": steps,
      "native_kernel_ms_per_step_sum": sum(
          r["native_fwd_ms"] + r["native_dx_ms"] + r["native_dw_ms"]
          for r in layers),
      "dense_kernel_ms_per_step_sum": sum(
          r["dense_fwd_ms"] + r["dense_dx_ms"] + r["dense_dw_ms"]
          for r in layers),
      "set_speedup_fit_step": steps["dense_fit_step_cached_donated"]
      / steps["set_fit_step_cached_donated"],
      "set_speedup_train_step_nnx_jit": steps["dense_train_step_nnx_jit"]
      / steps["set_train_step_nnx_jit"],
      "fused_backward_step_over_two_calls": steps[
          "set_train_step_jax_jit_split_state"]
      / steps["set_train_step_jax_jit_two_call_backward"],
      "feature_major_operands_step_over_batch_major": steps[
          "set_train_step_jax_jit_split_state"]
      / steps["set_train_step_jax_jit_batch_major_operands"],
      "environment": {**device_info(), **versions(),
                      "native_threads": native_cpu.num_threads()},
  }
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps({k: v for k, v in result.items()
                    if k not in ("layers", "environment")}, indent=1))
  for r in layers:
    print(r)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "out/set_step_breakdown.json")
