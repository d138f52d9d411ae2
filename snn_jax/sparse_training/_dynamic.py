"""Dynamic sparse training of a ``SparseMLP``: SET and RigL at fixed nnzb.

* **SET** (Mocanu et al., Nature Communications 2018; the method Liu et al.
  2020, arXiv:2006.14085, analyse): start from Erdős–Rényi(ε); at every
  update each layer removes the fraction ζ of its smallest positive and
  largest negative weights (``set_drop``) and regrows as many at random empty
  positions. Regrown weights are drawn from N(0, 0.1²), as the authors'
  reference code draws them (``regrow_init="set_normal"``).
* **RigL** (Evci et al., "Rigging the Lottery", ICML 2020): drop the ζ_t
  smallest-magnitude weights and grow where the dense gradient of the current
  batch is largest (``grow_by_gradient``: the gradient ``inputᵀ·dY`` is
  formed a few block columns at a time with a running top-k, never whole); grown weights start at zero; ζ_t follows a cosine decay
  ζ/2·(1 + cos(π t / T_end)) and updates stop at ``end_fraction`` of training.

* **Gradual magnitude pruning** (Zhu & Gupta 2017, "To prune, or not to
  prune", the TensorFlow model-pruning library Alford et al. 2019 used):
  every ``update_every`` steps from ``prune_begin_step`` to
  ``prune_end_step`` each layer keeps its ``(1 - s_t)·n_in·n_out`` largest-
  magnitude weights, ``s_t = s_f (1 - (1 - p)³)`` with ``p`` the fraction of
  the way from begin to end and ``s_f = 1 - prune_density`` (the initial
  sparsity is 0; the end step always updates, so the target is reached).
  Nothing regrows, so here -- unlike SET and RigL -- the
  number of stored blocks shrinks: each update changes the layers' shapes
  and the training step recompiles (a few dozen times per run).

At block size > 1 whole blocks move, scored by Frobenius norm (block SET,
block RigL with the gradient's block norm), so dynamic training keeps the
fast block kernels. Shapes never change: nnzb is fixed, the jitted training
step compiles once, and a rewired layer is just new values in the same
arrays. The optimizer state follows its weights: kept weights keep their
moments (moved to the blocks' new storage positions), grown weights start
from zero state.

Host side: an update moves the values to the host, rewires in NumPy
(``_rewire``) and writes them back; it costs milliseconds per layer at the
widths of the seed papers. RigL's growth needs every layer's input and
output gradient on one batch (one jitted call, O(batch · width) per
layer); the score of each empty block, the norm of that block of
``inputᵀ·dY``, is computed on the host in column chunks (memory
O(n_in · chunk + k), not O(n_in · n_out)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, traverse_util

from snn_jax.sparse_training import _rewire
from snn_jax.topology import Topology
from snn_jax.utils.config import ConfigPart

METHODS = ("static", "set", "rigl", "prune")
REGROW_INITS = ("zero", "set_normal", "sparse_he")
ZETA_SCHEDULES = ("constant", "cosine")
SET_REGROW_STD = 0.1  # Mocanu et al.'s reference code: randn() / 10.


def blocks_to_prune(nnzb: int, positions: int, sparsity: float) -> int:
  """How many of a layer's ``nnzb`` blocks gradual pruning removes to reach
  ``sparsity`` of its ``positions`` (all block positions), at least one
  block always kept."""
  keep = positions - int(round(sparsity * positions))
  return max(nnzb - max(keep, 1), 0)


@dataclasses.dataclass(frozen=True)
class SparseTrainingConfig(ConfigPart):
  """How connections evolve during training.

  Attributes:
    method: ``"static"`` (never), ``"set"``, ``"rigl"`` or ``"prune"``
      (gradual magnitude pruning).
    zeta: fraction of each layer's connections rewired per update, in [0, 1).
    update_every: rewire every this many optimizer steps; 0 = after every
      epoch (SET's schedule), except after the last.
    regrow_init: value of grown weights: ``"zero"``, ``"set_normal"``
      (N(0, 0.1²)) or ``"sparse_he"`` (N(0, 2 / mean fan-in)); default SET:
      set_normal, RigL: zero.
    zeta_schedule: ``"constant"`` or ``"cosine"``; default SET: constant,
      RigL: cosine.
    end_fraction: no update after this fraction of the total steps; default
      SET: 1.0, RigL: 0.75.
    seed: seeds the random growth (with the step, so resumed runs repeat);
      None: the training run's seed inside a ``TrainConfig``, else 0.
    prune_density: ``"prune"`` only: the fraction of every layer's dense
      ``n_in·n_out`` weights kept at the end, in (0, 1).
    prune_begin_step, prune_end_step: ``"prune"`` only: the first and last
      step at which masks are updated (Alford et al.'s code: 3,000 and
      10,000; their masks update every 200 steps, ``update_every=200``).
  """
  method: str = "static"
  zeta: float = 0.3
  update_every: int = 0
  regrow_init: str | None = None
  zeta_schedule: str | None = None
  end_fraction: float | None = None
  seed: int | None = None
  prune_density: float | None = None
  prune_begin_step: int = 0
  prune_end_step: int | None = None

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"sparse training method must be one of {METHODS}, got "
                       f"{self.method!r}")
    _rewire._check_zeta(self.zeta)
    if self.update_every < 0:
      raise ValueError(f"update_every must be >= 0 (0 = every epoch), got "
                       f"{self.update_every}")
    if self.regrow_init is not None and self.regrow_init not in REGROW_INITS:
      raise ValueError(f"regrow_init must be one of {REGROW_INITS}, got "
                       f"{self.regrow_init!r}")
    if self.zeta_schedule is not None and self.zeta_schedule not in ZETA_SCHEDULES:
      raise ValueError(f"zeta_schedule must be one of {ZETA_SCHEDULES}, got "
                       f"{self.zeta_schedule!r}")
    if self.end_fraction is not None and not 0.0 < self.end_fraction <= 1.0:
      raise ValueError(f"end_fraction must be in (0, 1], got {self.end_fraction}")
    if self.method == "prune":
      if self.prune_density is None or not 0.0 < self.prune_density < 1.0:
        raise ValueError(f"gradual pruning needs prune_density in (0, 1) (the "
                         f"fraction of weights kept), got {self.prune_density}")
      if self.prune_end_step is None or not (
          0 <= self.prune_begin_step < self.prune_end_step):
        raise ValueError(
            f"gradual pruning needs 0 <= prune_begin_step < prune_end_step, got "
            f"{self.prune_begin_step} and {self.prune_end_step}")
      if self.update_every < 1:
        raise ValueError("gradual pruning needs update_every >= 1 (steps "
                         "between mask updates, e.g. 200)")
    elif self.prune_density is not None or self.prune_end_step is not None:
      raise ValueError(f"prune_density and prune_end_step apply to method "
                       f"'prune', not {self.method!r}")

  @property
  def resolved_seed(self) -> int:
    return 0 if self.seed is None else self.seed

  @property
  def resolved_regrow_init(self) -> str:
    return self.regrow_init or ("zero" if self.method == "rigl" else "set_normal")

  @property
  def resolved_zeta_schedule(self) -> str:
    return self.zeta_schedule or ("cosine" if self.method == "rigl" else "constant")

  @property
  def resolved_end_fraction(self) -> float:
    if self.end_fraction is not None:
      return self.end_fraction
    return 0.75 if self.method == "rigl" else 1.0


@nnx.jit
def _inputs_and_output_grads(model, x, y):
  """Per layer: its input on the batch ``[B, n_in]`` and the loss gradient
  at its output ``[B, n_out]`` (zero taps on the outputs,
  ``SparseMLP.forward_with_taps``)."""
  taps = [jnp.zeros(x.shape[:1] + (layer.n_out,), jnp.float32)
          for layer in model.layers]

  def loss_fn(taps):
    logits, inputs = model.forward_with_taps(x, taps)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y).mean()
    return loss, inputs

  dys, inputs = jax.grad(loss_fn, has_aux=True)(taps)
  return inputs, dys


def layer_inputs_and_output_grads(model, x: jax.Array, y: jax.Array
                                  ) -> list[tuple[np.ndarray, np.ndarray]]:
  """``(input[B, n_in], dY[B, n_out])`` per layer of ``model`` (a
  ``SparseMLP``) on the batch ``x``, ``y`` (int labels), on the host:
  everything RigL's growth rule needs, O(batch · width) per layer."""
  inputs, dys = _inputs_and_output_grads(model, x, y)
  return [(host_array(a), host_array(d)) for a, d in zip(inputs, dys)]


def host_array(a: jax.Array) -> np.ndarray:
  """float32 NumPy copy of a device array, whole. In a multi-process run an
  array split over other processes' devices (a data-parallel batch, block
  values sharded along nnzb) is all-gathered first, so every process sees
  the same whole array and rewires identically."""
  if isinstance(a, jax.Array) and not a.is_fully_addressable and (
      not a.is_fully_replicated):
    from jax.experimental import multihost_utils
    a = multihost_utils.process_allgather(a, tiled=True)
  return np.asarray(jax.device_get(a), np.float32)


def gradient_block_scores(model, x: jax.Array, y: jax.Array) -> list[np.ndarray]:
  """The Frobenius norm of the dense loss gradient ``inputᵀ·dY`` on every
  block, float64[n_row_blocks, n_col_blocks] per layer: RigL's scores in
  full, O(n_in·n_out) per layer -- for small layers and tests; training
  uses :func:`~snn_jax.sparse_training.grow_by_gradient`, which never forms
  them."""
  out = []
  for layer, (a, dy) in zip(model.layers,
                            layer_inputs_and_output_grads(model, x, y)):
    g = (a.T @ dy).astype(np.float64)
    bs = layer.block_size
    g = g.reshape(layer.n_in // bs, bs, layer.n_out // bs, bs)
    out.append(np.sqrt((g * g).sum(axis=(1, 3))))
  return out


def _path_matches(path: tuple, layer: int) -> bool:
  for i in range(len(path) - 2):
    if (path[i] == "layers" and path[i + 1] == layer
        and path[i + 2] == "values"):
      return True
  return False


def remap_optimizer_state(optimizer: nnx.Optimizer, layer: int,
                          source: np.ndarray) -> int:
  """Moves the optimizer state of ``model.layers[layer].values`` to the
  layer's new block order: entry i becomes old entry ``source[i]``, or zero
  where ``source[i] < 0`` (a grown block). Returns how many state arrays
  were remapped (e.g. 1 for momentum, 2 for Adam's two moments)."""
  return _remap_optimizer_states(optimizer, {layer: source})[layer]


def _remap_optimizer_states(optimizer: nnx.Optimizer,
                            sources: dict[int, np.ndarray]) -> dict[int, int]:
  """``remap_optimizer_state`` for several layers in one pass over the
  optimizer state; returns the remapped-array count per layer."""
  state = nnx.state(optimizer)
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(state),
                                    keep_empty_nodes=True)
  counts = {layer: 0 for layer in sources}
  for layer, source in sources.items():
    src = jnp.asarray(np.maximum(source, 0))
    grown = jnp.asarray(source < 0)
    for path, leaf in flat.items():
      if _path_matches(path, layer) and getattr(leaf, "ndim", 0) == 3:
        moved = jnp.take(leaf, src, axis=0)
        flat[path] = jnp.where(grown[:, None, None], jnp.zeros_like(moved), moved)
        counts[layer] += 1
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(flat))
  nnx.update(optimizer, state)
  return counts


class Rewirer:
  """Applies a ``SparseTrainingConfig`` to a model during training.

  Usage in a loop (``snn_jax.training`` does this)::

    rewirer = Rewirer(config, total_steps=epochs * steps_per_epoch)
    ...after each optimizer step (global step count ``step``)
    if rewirer.due(step, end_of_epoch=..., last_epoch=...):
      stats = rewirer.update(model, optimizer, step, x_batch, y_batch)
  """

  def __init__(self, config: SparseTrainingConfig, *, total_steps: int):
    if total_steps < 1:
      raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    self.config = config
    self.total_steps = total_steps

  @property
  def active(self) -> bool:
    if self.config.method == "prune":
      return True
    return self.config.method != "static" and self.config.zeta > 0

  @property
  def changes_shapes(self) -> bool:
    """Whether updates change the layers' stored block counts (pruning)."""
    return self.config.method == "prune"

  def sparsity_at(self, step: int) -> float:
    """Gradual pruning's target sparsity after step ``step`` (cubic)."""
    c = self.config
    p = min(max((step - c.prune_begin_step)
                / (c.prune_end_step - c.prune_begin_step), 0.0), 1.0)
    return (1.0 - c.prune_density) * (1.0 - (1.0 - p) ** 3)

  def due(self, step: int, *, end_of_epoch: bool, last_epoch: bool) -> bool:
    """Whether an update follows optimizer step ``step`` (1-based)."""
    c = self.config
    if c.method == "prune":
      # The end step always updates, so the target is reached even when
      # end - begin is not a multiple of update_every.
      return c.prune_begin_step <= step <= c.prune_end_step and (
          (step - c.prune_begin_step) % c.update_every == 0
          or step == c.prune_end_step)
    if not self.active or step > self.config.resolved_end_fraction * self.total_steps:
      return False
    if self.config.update_every == 0:
      return end_of_epoch and not last_epoch
    return step % self.config.update_every == 0 and step < self.total_steps

  def zeta_at(self, step: int) -> float:
    """The rewired fraction after step ``step``."""
    zeta = self.config.zeta
    if self.config.resolved_zeta_schedule == "constant":
      return zeta
    t_end = self.config.resolved_end_fraction * self.total_steps
    return zeta / 2 * (1 + math.cos(math.pi * min(step / t_end, 1.0)))

  def update(self, model, optimizer: nnx.Optimizer | None, step: int,
             x: jax.Array | None = None,
             y: jax.Array | None = None) -> list[dict[str, Any]]:
    """Rewires every layer of ``model`` once; returns per-layer statistics
    (layer, zeta, dropped, grown). RigL needs the batch ``x, y``."""
    if not self.active:
      return []
    if self.config.method == "prune":
      return self._prune(model, optimizer, step)
    zeta = self.zeta_at(step)
    grads = None
    if self.config.method == "rigl":
      if x is None or y is None:
        raise ValueError("RigL updates need a batch (x, y) for gradient scores")
      grads = layer_inputs_and_output_grads(model, x, y)
    rng = np.random.default_rng([self.config.resolved_seed, step])
    stats, sources = [], {}
    for l, layer in enumerate(model.layers):
      stat, source = self._update_layer(l, layer, zeta, rng,
                                        None if grads is None else grads[l])
      stats.append(stat)
      if source is not None:
        sources[l] = source
    if optimizer is not None and sources:
      _remap_optimizer_states(optimizer, sources)
    return stats

  def _prune(self, model, optimizer, step: int) -> list[dict[str, Any]]:
    """Gradual pruning: every layer down to ``sparsity_at(step)``."""
    sparsity = self.sparsity_at(step)
    stats, sources = [], {}
    for l, layer in enumerate(model.layers):
      values_dev = layer.values.get_value()
      values = host_array(values_dev)
      topo = layer.topology()
      total = topo.n_row_blocks * topo.n_col_blocks
      k = blocks_to_prune(topo.nnzb, total, sparsity)
      stats.append({"layer": l, "sparsity": sparsity, "dropped": k, "grown": 0})
      if k == 0:
        continue
      kept = np.flatnonzero(~_rewire.magnitude_drop(values, k))
      new_topo = Topology(topo.n_in, topo.n_out, topo.rows[kept],
                          topo.cols[kept], block_size=topo.block_size,
                          name="pruned", params=topo.params, assume_sorted=True)
      layer.set_topology(new_topo, jnp.asarray(values[kept], values_dev.dtype),
                         allow_resize=True)
      sources[l] = kept
    if optimizer is not None and sources:
      _remap_optimizer_states(optimizer, sources)
    return stats

  def _update_layer(self, l, layer, zeta, rng, grads):
    """Rewires one layer; returns its statistics and the new blocks'
    sources (None when nothing moved)."""
    values_dev = layer.values.get_value()
    values = host_array(values_dev)
    topo = layer.topology()
    grid = (topo.n_row_blocks, topo.n_col_blocks)
    n_empty = grid[0] * grid[1] - topo.nnzb
    if self.config.method == "set":
      drop = _rewire.set_drop(values, zeta)
    else:
      drop = _rewire.magnitude_drop(values, int(round(zeta * topo.nnzb)))
    if drop.sum() > n_empty:  # Nowhere to grow that many: drop fewer.
      drop = _rewire.magnitude_drop(values, n_empty)
    k = int(drop.sum())
    if k == 0:
      return {"layer": l, "zeta": zeta, "dropped": 0, "grown": 0}, None
    if grads is None:
      gr, gc = _rewire.grow_random(topo.rows, topo.cols, grid, k, rng)
    else:
      gr, gc = _rewire.grow_by_gradient(topo.rows, topo.cols, *grads, k,
                                        topo.block_size)
    rew = _rewire.merge(topo.rows, topo.cols, drop, gr, gc, grid[1])
    bs = topo.block_size
    init = self.config.resolved_regrow_init
    if init == "zero":
      fill = 0.0
    else:
      mean_fan_in = topo.nnzb * bs * bs / topo.n_out
      std = SET_REGROW_STD if init == "set_normal" else math.sqrt(
          2.0 / mean_fan_in)
      fill = rng.normal(0.0, std, size=(k, bs, bs)).astype(np.float32)
    new_values = _rewire.carry_over(values, rew.source, fill)
    new_topo = Topology(topo.n_in, topo.n_out, rew.rows, rew.cols,
                        block_size=bs, name=topo.name, params=topo.params,
                        assume_sorted=True)
    layer.set_topology(new_topo, jnp.asarray(new_values, values_dev.dtype))
    return {"layer": l, "zeta": zeta, "dropped": k, "grown": k}, rew.source


def rewire_layers(model, optimizer: nnx.Optimizer | None,
                  config: SparseTrainingConfig, *, step: int = 0,
                  x: jax.Array | None = None,
                  y: jax.Array | None = None) -> list[dict[str, Any]]:
  """One update of every layer with ``config.zeta`` as given (no schedule),
  outside a training loop (notebooks, tests). ``step`` seeds the growth."""
  config = dataclasses.replace(config, zeta_schedule="constant", end_fraction=1.0)
  return Rewirer(config, total_steps=max(step, 1)).update(model, optimizer,
                                                           step, x, y)
