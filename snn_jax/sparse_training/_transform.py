"""Dynamic sparsity as an optimizer wrapper any NNX model can use: SET, block
SET, RigL and gradual magnitude pruning, on device, inside the jitted step.

Usage (any ``flax.nnx`` model whose sparse weights are
:class:`~snn_jax.nn.SparseDense` layers, wherever they sit in it)::

  from snn_jax import sparse_training
  sparse_tx = sparse_training.set(zeta=0.3, update_every=200,
                                  total_steps=10_000).wrap(optax.sgd(0.05, 0.9))
  optimizer = sparse_training.SparseOptimizer(model, sparse_tx)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)            # RigL: also grow_loss=...
    return loss

``optimizer.update`` applies the wrapped optax transformation, then -- on
the steps the schedule names, chosen by ``lax.cond`` -- rewires every sparse
layer it found (by type, at construction) in place: drop, grow, merge back
to row-major order and rebuild the transpose metadata, all ``jax.numpy`` at
fixed nnzb, so the step compiles once and never retraces. The optimizer's
moments follow their weights to the blocks' new storage positions and are
zero for grown blocks (found by the path of each layer's ``values`` in the
optimizer state, whatever the optax transformation). Growth is random from
``jax.random`` (SET: a key folded from the seed, the step and the layer) or
by gradient (RigL: ``xᵀ·dY`` formed a few block rows at a time with a
running top-k, from the growth taps of :mod:`snn_jax.nn._taps`; pass
``grow_loss``, the model's loss on the current batch).

Methods (definitions as in :mod:`snn_jax.sparse_training._dynamic`, whose
host-side ``Rewirer`` the training loop uses):

* ``set``: Mocanu et al. 2018 -- drop the fraction ζ of the smallest
  positive and largest negative weights (blocks of smallest norm above
  block size 1: *block SET*), regrow as many at random empty positions,
  from N(0, 0.1²) by default.
* ``rigl``: Evci et al. 2020 -- drop the ζ_t smallest-norm blocks, grow
  where the gradient's block norm is largest, grown weights zero; ζ_t
  cosine-decays and updates stop at ``end_fraction`` of training.
* ``prune``: Zhu & Gupta 2017's cubic schedule. nnzb stays fixed here:
  pruned blocks stay stored, at zero, masked after every step (their
  moments zeroed) -- shapes never change and the step never recompiles;
  the blocks left are ``optimizer.alive``.

The schedule (which steps update and how many blocks each moves) is
computed on the host at construction with the exact rules of the training
loop's ``Rewirer``, so both make the same choices where both are
deterministic (drops, RigL's growth, pruning; tested).
"""

from __future__ import annotations

import builtins
import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from snn_jax.nn import SparseDense
from snn_jax.nn._taps import layer_gradient_factors
from snn_jax.sparse_training import _device
from snn_jax.sparse_training._dynamic import (SET_REGROW_STD, Rewirer,
                                              SparseTrainingConfig,
                                              blocks_to_prune)

TRANSFORM_METHODS = ("set", "rigl", "prune")


@dataclasses.dataclass(frozen=True)
class DynamicSparsity:
  """When and how the sparse layers' connections change; build one with
  :func:`set`, :func:`rigl` or :func:`prune`, then ``.wrap(tx)``.

  Attributes:
    rules: the method and its parameters, the training loop's own
      :class:`~snn_jax.sparse_training.SparseTrainingConfig` (one set of
      rules and defaults for both ways in; ``update_every >= 1`` here).
    total_steps: optimizer steps in the whole run (the schedules need it).
    chunk_floats: RigL's largest gradient slice formed at once, in floats.
  """
  rules: SparseTrainingConfig
  total_steps: int
  chunk_floats: int = _device.GRADIENT_CHUNK_FLOATS

  def __post_init__(self):
    if self.rules.method not in TRANSFORM_METHODS:
      raise ValueError(f"method must be one of {TRANSFORM_METHODS}, got "
                       f"{self.rules.method!r}")
    if not isinstance(self.total_steps, int) or self.total_steps < 1:
      raise ValueError(f"total_steps must be a positive int (the run's "
                       f"optimizer steps), got {self.total_steps!r}")
    if self.rules.update_every < 1:
      raise ValueError(f"update_every must be >= 1 step, got "
                       f"{self.rules.update_every}")
    if self.chunk_floats < 1:
      raise ValueError(f"chunk_floats must be >= 1, got {self.chunk_floats}")

  @property
  def method(self) -> str:
    return self.rules.method

  @property
  def seed(self) -> int:
    return self.rules.resolved_seed

  def schedule(self) -> tuple[np.ndarray, np.ndarray]:
    """``(steps int64[n], amount float64[n])``: the steps after which an
    update happens (1-based optimizer steps) and ζ_t (set, rigl) or the
    target sparsity s_t (prune) at each, by the loop's ``Rewirer`` rules."""
    rewirer = Rewirer(self.rules, total_steps=self.total_steps)
    if self.method == "prune":
      r = self.rules
      candidates = builtins.set(range(r.prune_begin_step, r.prune_end_step + 1,
                                      r.update_every))
      candidates.add(r.prune_end_step)
    else:
      candidates = range(self.rules.update_every, self.total_steps + 1,
                         self.rules.update_every)
    steps = np.array(sorted(
        s for s in candidates if s >= 1 and rewirer.due(
            s, end_of_epoch=False, last_epoch=False)), np.int64)
    amount = np.array([rewirer.sparsity_at(s) if self.method == "prune"
                       else rewirer.zeta_at(s) for s in steps], np.float64)
    return steps, amount

  def wrap(self, tx: optax.GradientTransformation) -> "SparseTx":
    """This dynamic sparsity around the optax transformation ``tx``."""
    if not isinstance(tx, optax.GradientTransformation):
      raise TypeError(f"wrap takes an optax GradientTransformation (e.g. "
                      f"optax.sgd(0.1)), got {type(tx).__name__}")
    return SparseTx(self, tx)


@dataclasses.dataclass(frozen=True)
class SparseTx:
  """An optax transformation and the dynamic sparsity around it; give it to
  :class:`SparseOptimizer`."""
  dynamic: DynamicSparsity
  tx: optax.GradientTransformation


def set(*, total_steps: int, zeta: float = 0.3, update_every: int = 100,
        regrow_init: str | None = None, zeta_schedule: str | None = None,
        end_fraction: float | None = None, seed: int = 0) -> DynamicSparsity:
  """SET (Mocanu et al. 2018); block SET at block size > 1. Regrown weights
  from N(0, 0.1²) unless ``regrow_init`` says otherwise."""
  return DynamicSparsity(SparseTrainingConfig(
      method="set", zeta=zeta, update_every=update_every,
      regrow_init=regrow_init, zeta_schedule=zeta_schedule,
      end_fraction=end_fraction, seed=seed), total_steps)


def rigl(*, total_steps: int, zeta: float = 0.3, update_every: int = 100,
         end_fraction: float | None = None, zeta_schedule: str | None = None,
         regrow_init: str | None = None, seed: int = 0,
         chunk_floats: int = _device.GRADIENT_CHUNK_FLOATS) -> DynamicSparsity:
  """RigL (Evci et al. 2020): cosine-decayed ζ, updates until
  ``end_fraction`` (0.75) of training, growth by gradient. The optimizer's
  ``update`` then needs ``grow_loss``."""
  return DynamicSparsity(SparseTrainingConfig(
      method="rigl", zeta=zeta, update_every=update_every,
      regrow_init=regrow_init, zeta_schedule=zeta_schedule,
      end_fraction=end_fraction, seed=seed), total_steps, chunk_floats)


def prune(*, density: float, begin_step: int, end_step: int,
          update_every: int = 200, total_steps: int | None = None
          ) -> DynamicSparsity:
  """Gradual magnitude pruning (Zhu & Gupta 2017) to ``density`` of every
  layer's dense ``n_in·n_out`` between ``begin_step`` and ``end_step``."""
  return DynamicSparsity(SparseTrainingConfig(
      method="prune", zeta=0.0, update_every=update_every,
      prune_density=density, prune_begin_step=begin_step,
      prune_end_step=end_step),
      total_steps if total_steps is not None else end_step)


@dataclasses.dataclass(frozen=True)
class _LayerPlan:
  """Static facts about one sparse layer (hashable: part of the graph)."""
  path: tuple
  grid: tuple[int, int]
  block_size: int
  nnzb: int
  n_empty: int
  k_max: int
  n_candidates: int
  regrow_std: float


def _sparse_layer_paths(model) -> list[tuple]:
  return [tuple(path) for path, node in nnx.iter_graph(model)
          if isinstance(node, SparseDense)]


class SparseOptimizer(nnx.Optimizer):
  """``nnx.Optimizer`` with dynamic sparsity: ``update`` steps the wrapped
  optax transformation, then rewires the model's sparse layers on the
  scheduled steps (see the module docstring).

  Args:
    model: any NNX module; its ``SparseDense`` layers are found by type.
    tx: a :class:`SparseTx` (``sparse_training.set(...).wrap(optax...)``).
    wrt: the variables optimised (default ``nnx.Param``).

  Attributes beyond ``nnx.Optimizer``'s:
    layer_paths: where the sparse layers are in the model.
    rewirings: updates done so far (int32 scalar).
    moved: blocks moved (set, rigl) or pruned (prune) per layer by the last
      update (int32[n_layers]).
    alive: ``prune`` only: bool[nnzb] per layer, the blocks not pruned.
  """

  def __init__(self, model, tx: SparseTx, *, wrt=nnx.Param):
    if not isinstance(tx, SparseTx):
      raise TypeError(
          "SparseOptimizer takes a SparseTx: wrap the optax transformation, "
          "e.g. sparse_training.set(total_steps=..., zeta=0.3).wrap("
          f"optax.sgd(0.1)); got {type(tx).__name__}")
    super().__init__(model, tx.tx, wrt=wrt)
    self.dynamic = tx.dynamic
    paths = _sparse_layer_paths(model)
    if not paths:
      raise ValueError(f"{type(model).__name__} has no SparseDense layers: "
                       "nothing for dynamic sparsity to rewire")
    steps, amount = tx.dynamic.schedule()
    nodes = dict(nnx.iter_graph(model))
    plans, amounts = [], []
    for path in paths:
      plan, k = self._plan(path, nodes[path], amount)
      plans.append(plan)
      amounts.append(k)
    self.plans = tuple(plans)
    self.schedule_steps = nnx.OptState(jnp.asarray(
        np.concatenate([steps, [np.iinfo(np.int32).max]]), jnp.int32))
    self.schedule_zeta = nnx.OptState(jnp.asarray(
        np.concatenate([amount, [0.0]]), jnp.float32))
    self.schedule_k = nnx.OptState(jnp.asarray(np.stack(amounts), jnp.int32))
    self.rewirings = nnx.OptState(jnp.zeros((), jnp.int32))
    self.moved = nnx.OptState(jnp.zeros(len(paths), jnp.int32))
    if tx.dynamic.method == "prune":
      self.alive = nnx.List([nnx.OptState(jnp.ones(p.nnzb, bool))
                             for p in self.plans])
    else:
      self.alive = None

  def _plan(self, path, layer: SparseDense, amount: np.ndarray
            ) -> tuple[_LayerPlan, np.ndarray]:
    """The layer's static plan and its blocks moved at each scheduled step
    (the loop's rules: ``round(ζ_t·nnzb)`` capped at the empty positions;
    pruning: blocks pruned in all, down to the kept count)."""
    topo = layer.topology()
    d = self.dynamic
    grid = (topo.n_row_blocks, topo.n_col_blocks)
    total = grid[0] * grid[1]
    n_empty = total - topo.nnzb
    if d.method == "prune":
      k = np.array([blocks_to_prune(topo.nnzb, total, s) for s in amount],
                   np.int64)
      k_max = int(k.max(initial=0))
    else:
      k = np.array([min(int(round(z * topo.nnzb)), n_empty) for z in amount],
                   np.int64)
      # SET at block size 1 splits the count by sign: one more at most.
      k_max = min(int(k.max(initial=0)) + 1, topo.nnzb, n_empty)
    density = topo.nnzb / total
    init = d.rules.resolved_regrow_init
    bs = topo.block_size
    std = {"zero": 0.0, "set_normal": SET_REGROW_STD,
           "sparse_he": math.sqrt(2.0 / (topo.nnzb * bs * bs / topo.n_out))
           }[init]
    plan = _LayerPlan(path, grid, bs, topo.nnzb, n_empty, k_max,
                      _device.candidate_count(k_max, density), std)
    return plan, k

  @property
  def layer_paths(self) -> tuple[tuple, ...]:
    """Where the sparse layers are in the model."""
    return tuple(plan.path for plan in self.plans)

  def _layers(self, model) -> list[SparseDense]:
    nodes = {tuple(p): n for p, n in nnx.iter_graph(model)
             if isinstance(n, SparseDense)}
    try:
      return [nodes[p] for p in self.layer_paths]
    except KeyError as e:
      raise ValueError(f"the model has no sparse layer at {e.args[0]}: is it "
                       "the model this optimizer was built for?") from None

  def _state_leaves(self) -> list[list[nnx.Variable]]:
    """Per layer, the optimizer-state variables shaped like its values."""
    flat = list(nnx.to_flat_state(nnx.state(self.opt_state)))
    out = []
    for plan in self.plans:
      suffix = plan.path + ("values",)
      out.append([v for p, v in flat if tuple(p[-len(suffix):]) == suffix
                  and getattr(v.get_value(), "shape", None)
                  == (plan.nnzb, plan.block_size, plan.block_size)])
    return out

  def update(self, model, grads, /, *,
             grow_loss: Callable[[Any], jax.Array] | None = None,
             **kwargs) -> optax.Updates:
    """One optimizer step, then the scheduled rewiring (if this step is
    one). ``grow_loss(model) -> scalar``: RigL only, the loss on the
    current batch (its gradient at the sparse layers chooses the growth).
    Returns the optax updates."""
    method = self.dynamic.method
    if method == "rigl" and grow_loss is None:
      raise ValueError("RigL grows where the loss gradient is largest: pass "
                       "grow_loss=lambda m: loss_fn(m, x, y) to update()")
    if method != "rigl" and grow_loss is not None:
      raise ValueError(f"grow_loss is for RigL; {method!r} does not use it")
    updates = super().update(model, grads, **kwargs)
    layers = self._layers(model)
    if method == "prune":
      for layer, alive in zip(layers, self.alive):
        layer.values.set_value(_masked(layer.values.get_value(),
                                       alive.get_value()))
    n_due = self.schedule_steps.get_value().shape[0] - 1
    if n_due == 0:
      return updates
    step = self.step.get_value().astype(jnp.int32)
    steps = self.schedule_steps.get_value()
    at = jnp.minimum(jnp.sum(steps < step, dtype=jnp.int32), n_due)
    due = steps[at] == step
    leaves = self._state_leaves()
    operands = {
        "values": [l.values.get_value() for l in layers],
        "row_idx": [l.row_idx.get_value() for l in layers],
        "col_idx": [l.col_idx.get_value() for l in layers],
        "row_ptr": [l.row_ptr.get_value() for l in layers],
        "col_order": [l.col_order.get_value() for l in layers],
        "col_ptr": [l.col_ptr.get_value() for l in layers],
        "moments": [[v.get_value() for v in vs] for vs in leaves],
        "alive": ([a.get_value() for a in self.alive]
                  if self.alive is not None else None),
        "moved": self.moved.get_value(),
    }
    context = {"step": step, "k": self.schedule_k.get_value()[:, at],
               "zeta": self.schedule_zeta.get_value()[at]}
    if method == "rigl":
      graphdef, state = nnx.split(model)
      context["model"] = state

      def factors(state):
        copy = nnx.merge(graphdef, state)
        return layer_gradient_factors(lambda: grow_loss(copy),
                                      self._layers(copy))
    else:
      factors = None

    def rewire(ops):
      return self._rewire(ops, context, factors)

    new = jax.lax.cond(due, rewire, lambda ops: ops, operands)
    for l, layer in enumerate(layers):
      layer.values.set_value(new["values"][l])
      for name in ("row_idx", "col_idx", "row_ptr", "col_order", "col_ptr"):
        getattr(layer, name).set_value(new[name][l])
      for var, value in zip(leaves[l], new["moments"][l]):
        var.set_value(value)
      if self.alive is not None:
        self.alive[l].set_value(new["alive"][l])
    self.moved.set_value(new["moved"])
    self.rewirings.set_value(self.rewirings.get_value()
                             + due.astype(jnp.int32))
    return updates

  def _random_draws(self, step: jax.Array
                    ) -> tuple[list[jax.Array], list[jax.Array]]:
    """Every layer's random numbers for the update after ``step``: the
    candidate positions' bits (SET) and the regrown values' normals, from
    one key folded from the seed and the step (so a resumed run repeats),
    drawn in two calls for all layers (each call compiles a threefry)."""
    key = jax.random.fold_in(jax.random.key(self.dynamic.seed), step)
    bits_key, normal_key = jax.random.split(key)
    live = [p.k_max > 0 for p in self.plans]
    sizes = [p.n_candidates if (ok and self.dynamic.method == "set") else 0
             for p, ok in zip(self.plans, live)]
    draws = (_split_at(jax.random.bits(bits_key, (2, sum(sizes)),
                                       jnp.uint32), sizes, axis=1)
             if sum(sizes) else [None] * len(self.plans))
    sizes = [p.nnzb * p.block_size ** 2 if (ok and p.regrow_std > 0) else 0
             for p, ok in zip(self.plans, live)]
    normals = (_split_at(jax.random.normal(normal_key, (sum(sizes),),
                                           jnp.float32), sizes)
               if sum(sizes) else [None] * len(self.plans))
    return draws, normals

  def _rewire(self, ops: dict, context: dict, factors) -> dict:
    """The update of every layer (the true branch of the schedule's cond)."""
    new = jax.tree.map(lambda x: x, ops)
    grads = factors(context["model"]) if factors is not None else None
    moved = []
    draws, normals = self._random_draws(context["step"])
    for l, plan in enumerate(self.plans):
      if plan.k_max == 0:
        moved.append(jnp.zeros((), jnp.int32))
        continue
      k = context["k"][l]
      values = ops["values"][l]
      if self.dynamic.method == "prune":
        drop = _device.magnitude_drop(values, k, keep_first=ops["alive"][l])
        new["alive"][l] = ~drop
        new["values"][l] = _masked(values, ~drop)
        new["moments"][l] = [_masked(m, ~drop) for m in ops["moments"][l]]
        moved.append(jnp.sum(drop).astype(jnp.int32))
        continue
      if self.dynamic.method == "set":
        drop = _device.set_drop(values, context["zeta"])
        if plan.n_empty < plan.nnzb:  # Nowhere to grow that many: drop fewer.
          drop = jnp.where(jnp.sum(drop) > plan.n_empty,
                           _device.magnitude_drop(values, plan.n_empty), drop)
        want = jnp.sum(drop).astype(jnp.int32)
        gr, gc, found = _device.grow_random(
            draws[l], ops["row_idx"][l], ops["col_idx"][l], plan.grid,
            plan.k_max, want)
        # Fewer empty draws than drops (a nearly full layer): keep the
        # dropped blocks of largest norm, so drops and growths match.
        norms = _device.block_norms(values)
        drop = drop & (_device._rank((~drop).astype(jnp.int32), norms)
                       < found)
        k = found
      else:
        drop = _device.magnitude_drop(values, k)
        x, dy = grads[l]
        gr, gc = _device.grow_by_gradient(
            x, dy, ops["row_idx"][l], ops["col_idx"][l], ops["row_ptr"][l],
            plan.block_size, plan.k_max,
            chunk_floats=self.dynamic.chunk_floats)
      rows, cols, source = _device.merge(ops["row_idx"][l], ops["col_idx"][l],
                                         drop, gr, gc)
      meta = _device.csr_metadata(rows, cols, plan.grid)
      for name, value in meta.items():
        new[name][l] = value
      fill = (plan.regrow_std * normals[l].reshape(values.shape)
              if plan.regrow_std > 0 else 0.0)
      new["values"][l] = _device.carry_over(values, source, fill)
      new["moments"][l] = [_device.carry_over(m, source, 0.0)
                           for m in ops["moments"][l]]
      moved.append(jnp.asarray(k, jnp.int32))
    new["moved"] = jnp.stack(moved)
    return new


def _split_at(flat: jax.Array, sizes: list[int], axis: int = 0
              ) -> list[jax.Array]:
  offsets = np.cumsum([0] + sizes)
  return [jax.lax.slice_in_dim(flat, int(a), int(b), axis=axis)
          for a, b in zip(offsets[:-1], offsets[1:])]


def _masked(values: jax.Array, alive: jax.Array) -> jax.Array:
  return jnp.where(alive.reshape((-1,) + (1,) * (values.ndim - 1)), values,
                   jnp.zeros((), values.dtype))
