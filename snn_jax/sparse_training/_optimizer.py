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

Methods (each in its own file, registered by name: ``_set``, ``_rigl``,
``_prune``; :mod:`snn_jax.sparse_training._method` says what a method is):

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
  the blocks left are ``optimizer.alive`` (``kept_topologies``).

The schedule (which steps update and how many blocks each moves) is
computed on the host at construction and kept as static constants, not
optimizer state: a checkpoint holds the run's state only, so a run
restored with more epochs follows the schedule of its new length.
``update_every=0`` (SET's own schedule: after every epoch but the last)
does not rewire inside ``update``: call :meth:`SparseOptimizer.rewire`
after the epoch's evaluation, as SET's code evaluates before it evolves
the weights.
"""

from __future__ import annotations

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
from snn_jax.sparse import INDEX_FIELDS
from snn_jax.sparse_training import _blocks
from snn_jax.sparse_training._config import (SET_REGROW_STD,
                                             SparseTrainingConfig)
from snn_jax.sparse_training._method import LayerPlan, Method, UpdateInputs
from snn_jax.sparse_training._rigl import GRADIENT_CHUNK_FLOATS
from snn_jax.topology import Topology


@dataclasses.dataclass(frozen=True)
class DynamicSparsity:
  """When and how the sparse layers' connections change; build one with
  :func:`set`, :func:`rigl` or :func:`prune`, then ``.wrap(tx)``.

  Attributes:
    config: the method and its parameters, a
      :class:`~snn_jax.sparse_training.SparseTrainingConfig` (a training
      run's ``sparse`` part; its method may not be ``"static"``).
    total_steps: optimizer steps in the whole run (the schedules need it).
    chunk_floats: RigL's largest gradient slice formed at once, in floats.
    steps_per_epoch: the run's steps per epoch; needed (only) by
      ``update_every=0``, which rewires after every epoch but the last.
  """
  config: SparseTrainingConfig
  total_steps: int
  chunk_floats: int = GRADIENT_CHUNK_FLOATS
  steps_per_epoch: int | None = None

  def __post_init__(self):
    if not isinstance(self.config, SparseTrainingConfig):
      raise TypeError(f"DynamicSparsity takes a SparseTrainingConfig, got "
                      f"{type(self.config).__name__}")
    if self.config.rules is None:
      raise ValueError(f"method {self.config.method!r} never rewires: use a "
                       "plain nnx.Optimizer")
    if not isinstance(self.total_steps, int) or self.total_steps < 1:
      raise ValueError(f"total_steps must be a positive int (the run's "
                       f"optimizer steps), got {self.total_steps!r}")
    if self.config.update_every == 0 and not (
        isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1):
      raise ValueError(
          "update_every=0 rewires after every epoch but the last: give "
          f"steps_per_epoch (a positive int), got {self.steps_per_epoch!r}; "
          "or rewire every update_every >= 1 steps")
    if self.chunk_floats < 1:
      raise ValueError(f"chunk_floats must be >= 1, got {self.chunk_floats}")

  @property
  def rules(self) -> Method:
    """The method's registered rules."""
    return self.config.rules

  @property
  def method(self) -> str:
    return self.config.method

  @property
  def seed(self) -> int:
    return self.config.resolved_seed

  @property
  def after_epoch(self) -> bool:
    """Whether updates come after epochs (``update_every=0``, through
    ``SparseOptimizer.rewire``) rather than inside ``update``."""
    return self.config.update_every == 0

  def schedule(self) -> tuple[np.ndarray, np.ndarray]:
    """``(steps int64[n], amount float64[n])``: the 1-based optimizer steps
    after which an update comes, and ζ_t (set, rigl) or the target sparsity
    s_t (prune) at each."""
    steps = self.rules.update_steps(self.config, self.total_steps,
                                    self.steps_per_epoch)
    amount = np.array([self.rules.amount_at(self.config, int(s),
                                            self.total_steps)
                       for s in steps], np.float64)
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


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
  """A run's updates: after the 1-based optimizer steps ``steps``
  (int64[n]), with ζ_t or s_t ``amount`` (float64[n]) and per layer the
  blocks moved or pruned in all, ``k`` (int64[n_layers, n]). Hashed and
  compared by content, once: a static part of the optimizer's graph."""
  steps: np.ndarray
  amount: np.ndarray
  k: np.ndarray
  digest: str

  @classmethod
  def of(cls, steps, amount, k) -> "Schedule":
    import hashlib
    arrays = [np.ascontiguousarray(steps, np.int64),
              np.ascontiguousarray(amount, np.float64),
              np.ascontiguousarray(k, np.int64)]
    h = hashlib.sha256()
    for a in arrays:
      h.update(str(a.shape).encode())
      h.update(a.tobytes())
    for a in arrays:
      a.setflags(write=False)
    return cls(*arrays, h.hexdigest())

  def __hash__(self) -> int:
    return hash(self.digest)

  def __eq__(self, other) -> bool:
    return isinstance(other, Schedule) and other.digest == self.digest


def _sparse_layer_paths(model) -> list[tuple]:
  return [tuple(path) for path, node in nnx.iter_graph(model)
          if isinstance(node, SparseDense)]


class SparseOptimizer(nnx.Optimizer):
  """``nnx.Optimizer`` with dynamic sparsity: ``update`` steps the wrapped
  optax transformation, then rewires the model's sparse layers on the
  scheduled steps (see the module docstring); with ``update_every=0``,
  :meth:`rewire` does it after the epoch's evaluation.

  Args:
    model: any NNX module; its ``SparseDense`` layers are found by type.
    tx: a :class:`SparseTx` (``sparse_training.set(...).wrap(optax...)``).
    wrt: the variables optimised (default ``nnx.Param``).

  Attributes beyond ``nnx.Optimizer``'s:
    layer_paths: where the sparse layers are in the model.
    rewirings: updates done so far (int32 scalar).
    moved: blocks moved (set, rigl) or pruned (prune) per layer by the last
      update (int32[n_layers]).
    alive: pruning only: bool[nnzb] per layer, the blocks not pruned
      (else None).
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
    # A static constant (in the graph definition), not state: a restored
    # run takes the schedule of its own config and length.
    self.schedule = Schedule.of(steps, amount, np.array(amounts, np.int64))
    self.rewirings = nnx.OptState(jnp.zeros((), jnp.int32))
    self.moved = nnx.OptState(jnp.zeros(len(paths), jnp.int32))
    if tx.dynamic.rules.keeps_alive_mask:
      self.alive = nnx.List([nnx.OptState(jnp.ones(p.nnzb, bool))
                             for p in self.plans])
    else:
      self.alive = None

  def _plan(self, path, layer: SparseDense, amount: np.ndarray
            ) -> tuple[LayerPlan, np.ndarray]:
    """The layer's static plan and the blocks moved (or pruned in all) at
    each scheduled update."""
    topo = layer.topology()
    rules, config = self.dynamic.rules, self.dynamic.config
    grid = (topo.n_row_blocks, topo.n_col_blocks)
    positions = grid[0] * grid[1]
    n_empty = positions - topo.nnzb
    k = np.array([rules.blocks_per_update(float(a), topo.nnzb, positions)
                  for a in amount], np.int64)
    k_max = rules.k_max(k, topo.nnzb, n_empty)
    bs = topo.block_size
    std = {"zero": 0.0, "set_normal": SET_REGROW_STD,
           "sparse_he": math.sqrt(2.0 / (topo.nnzb * bs * bs / topo.n_out))
           }[config.resolved_regrow_init]
    return LayerPlan(path, grid, bs, topo.nnzb, n_empty, k_max,
                     rules.candidates(k_max, topo.nnzb / positions), std), k

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
    """Per layer, the optimizer-state variables shaped like its values
    (found by the path of the layer's ``values`` in the state, whatever the
    optax transformation)."""
    flat = list(nnx.to_flat_state(nnx.state(self.opt_state)))
    out = []
    for plan in self.plans:
      suffix = plan.path + ("values",)
      out.append([v for p, v in flat if tuple(p[-len(suffix):]) == suffix
                  and getattr(v.get_value(), "shape", None)
                  == (plan.nnzb, plan.block_size, plan.block_size)])
    return out

  def _check_grow_loss(self, grow_loss) -> None:
    rules = self.dynamic.rules
    if rules.needs_gradient and grow_loss is None:
      raise ValueError(f"{rules.name} grows where the loss gradient is "
                       "largest: pass grow_loss=lambda m: loss_fn(m, x, y)")
    if not rules.needs_gradient and grow_loss is not None:
      raise ValueError(f"grow_loss is for methods that grow by gradient "
                       f"(rigl); {rules.name!r} does not use it")

  def update(self, model, grads, /, *,
             grow_loss: Callable[[Any], jax.Array] | None = None,
             **kwargs) -> optax.Updates:
    """One optimizer step, then the scheduled rewiring if this step is one
    (``update_every >= 1``). ``grow_loss(model) -> scalar``: RigL only, the
    loss on the current batch (its gradient at the sparse layers chooses
    the growth). Returns the optax updates."""
    if not self.dynamic.after_epoch:
      self._check_grow_loss(grow_loss)
    elif grow_loss is not None:
      raise ValueError("with update_every=0 the rewiring comes after the "
                       "epoch: pass grow_loss to rewire(), not update()")
    updates = super().update(model, grads, **kwargs)
    if self.alive is not None:
      for layer, alive in zip(self._layers(model), self.alive):
        layer.values.set_value(_blocks.masked(layer.values.get_value(),
                                              alive.get_value()))
    if not self.dynamic.after_epoch:
      self._scheduled_rewiring(model, grow_loss)
    return updates

  def rewire(self, model, *,
             grow_loss: Callable[[Any], jax.Array] | None = None) -> None:
    """The update scheduled after the current step, if there is one: with
    ``update_every=0``, call it after each epoch's last step and its
    evaluation (inside ``nnx.jit`` or not). ``grow_loss`` as for
    :meth:`update` (RigL: the loss on a batch, e.g. the epoch's last)."""
    if not self.dynamic.after_epoch:
      raise ValueError("this optimizer rewires inside update() every "
                       f"{self.dynamic.config.update_every} steps; rewire() "
                       "is for update_every=0 (after every epoch)")
    self._check_grow_loss(grow_loss)
    self._scheduled_rewiring(model, grow_loss)

  def _scheduled_rewiring(self, model, grow_loss) -> None:
    """Every layer's update if the current step is scheduled (``lax.cond``:
    one compiled step whether or not it is)."""
    schedule = self.schedule
    n_due = len(schedule.steps)
    if n_due == 0:
      return
    layers = self._layers(model)
    step = self.step.get_value().astype(jnp.int32)
    steps = jnp.asarray(np.append(schedule.steps, np.iinfo(np.int32).max),
                        jnp.int32)
    at = jnp.minimum(jnp.sum(steps < step, dtype=jnp.int32), n_due)
    due = steps[at] == step
    leaves = self._state_leaves()
    operands = {
        "layers": [{
            "values": layer.values.get_value(),
            **{name: getattr(layer, name).get_value()
               for name in INDEX_FIELDS},
            "moments": [v.get_value() for v in leaves[l]],
            "alive": (self.alive[l].get_value() if self.alive is not None
                      else None)} for l, layer in enumerate(layers)],
        "moved": self.moved.get_value(),
    }
    k_table = jnp.asarray(np.pad(schedule.k, ((0, 0), (0, 1))), jnp.int32)
    context = {"step": step, "k": k_table[:, at],
               "amount": jnp.asarray(np.append(schedule.amount, 0.0),
                                     jnp.float32)[at]}
    factors = None
    if self.dynamic.rules.needs_gradient:
      graphdef, state = nnx.split(model)
      context["model"] = state

      def factors(state):
        copy = nnx.merge(graphdef, state)
        return layer_gradient_factors(lambda: grow_loss(copy),
                                      self._layers(copy))

    new = jax.lax.cond(due, lambda ops: self._rewire_all(ops, context,
                                                         factors),
                       lambda ops: ops, operands)
    for l, layer in enumerate(layers):
      arrays = new["layers"][l]
      layer.values.set_value(arrays["values"])
      for name in INDEX_FIELDS:
        getattr(layer, name).set_value(arrays[name])
      for var, value in zip(leaves[l], arrays["moments"]):
        var.set_value(value)
      if self.alive is not None:
        self.alive[l].set_value(arrays["alive"])
    self.moved.set_value(new["moved"])
    self.rewirings.set_value(self.rewirings.get_value()
                             + due.astype(jnp.int32))

  def _random_draws(self, step: jax.Array
                    ) -> tuple[list[jax.Array | None], list[jax.Array | None]]:
    """Every layer's random numbers for the update after ``step``: the
    candidate positions' bits and the regrown values' normals, from one key
    folded from the seed and the step (so a resumed run repeats), drawn in
    two calls for all layers (each call compiles a threefry)."""
    key = jax.random.fold_in(jax.random.key(self.dynamic.seed), step)
    bits_key, normal_key = jax.random.split(key)
    sizes = [p.n_candidates if p.k_max > 0 else 0 for p in self.plans]
    draws = (_split_at(jax.random.bits(bits_key, (2, sum(sizes)),
                                       jnp.uint32), sizes, axis=1)
             if sum(sizes) else [None] * len(self.plans))
    sizes = [p.nnzb * p.block_size ** 2
             if (p.k_max > 0 and p.regrow_std > 0) else 0
             for p in self.plans]
    normals = (_split_at(jax.random.normal(normal_key, (sum(sizes),),
                                           jnp.float32), sizes)
               if sum(sizes) else [None] * len(self.plans))
    return draws, normals

  def _rewire_all(self, ops: dict, context: dict, factors) -> dict:
    """The update of every layer (the true branch of the schedule's cond)."""
    rules = self.dynamic.rules
    gradients = factors(context["model"]) if factors is not None else None
    draws, normals = self._random_draws(context["step"])
    new_layers, moved = [], []
    for l, plan in enumerate(self.plans):
      if plan.k_max == 0:
        new_layers.append(ops["layers"][l])
        moved.append(jnp.zeros((), jnp.int32))
        continue
      inputs = UpdateInputs(
          k=context["k"][l], amount=context["amount"],
          position_bits=draws[l], normals=normals[l],
          gradient=None if gradients is None else gradients[l],
          chunk_floats=self.dynamic.chunk_floats)
      arrays, count = rules.rewire_layer(plan, ops["layers"][l], inputs)
      new_layers.append(arrays)
      moved.append(jnp.asarray(count, jnp.int32))
    return {"layers": new_layers, "moved": jnp.stack(moved)}

  def kept_topologies(self, model) -> list[Topology]:
    """The topology of every layer of ``model.layers``, in that order,
    without its pruned blocks (pruning; otherwise as stored): the network
    a pruning run leaves. On the host."""
    alive = {}
    if self.alive is not None:
      for layer, mask in zip(self._layers(model), self.alive):
        alive[id(layer)] = np.asarray(jax.device_get(mask.get_value()))
    out = []
    for layer in model.layers:
      t = layer.topology()
      if id(layer) in alive and not alive[id(layer)].all():
        keep = alive[id(layer)]
        t = Topology(t.n_in, t.n_out, t.rows[keep], t.cols[keep],
                     block_size=t.block_size, name="pruned", params=t.params,
                     assume_sorted=True)
      out.append(t)
    return out

  def pruned_weights(self) -> int:
    """Weights in pruned blocks (stored at zero), over all layers; 0 for
    methods that do not prune."""
    if self.alive is None:
      return 0
    return int(sum(int((~np.asarray(jax.device_get(a.get_value()))).sum())
                   * p.block_size ** 2 for a, p in zip(self.alive,
                                                       self.plans)))


def _split_at(flat: jax.Array, sizes: list[int], axis: int = 0
              ) -> list[jax.Array]:
  offsets = np.cumsum([0] + sizes)
  return [jax.lax.slice_in_dim(flat, int(a), int(b), axis=axis)
          for a, b in zip(offsets[:-1], offsets[1:])]
