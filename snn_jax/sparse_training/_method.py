"""What a dynamic-sparsity method is to the engine, and the registry of them.

A :class:`Method` says *when* a layer's connections change (its schedule,
computed once on the host from the config and the run's length) and *how*
(``rewire_layer``: pure ``jax.numpy`` at fixed shapes, run by
:class:`~snn_jax.sparse_training.SparseOptimizer` inside the jitted step or
after an epoch's evaluation). Each method is one file: SET in ``_set``,
RigL in ``_rigl``, gradual magnitude pruning in ``_prune``; each registers
its rules under its config name, and :func:`method_rules` is the only place
a name becomes rules.

The per-layer arrays a rule sees and returns (a ``dict``, traced):
``values [nnzb, bs, bs]``, the CSR index arrays ``row_idx, col_idx,
row_ptr, col_order, col_ptr`` (see :mod:`snn_jax.sparse`), ``moments``
(the optimizer-state arrays shaped like ``values``) and ``alive``
(bool[nnzb], pruning only, else None).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from snn_jax.sparse_training import _blocks
from snn_jax.sparse_training._config import (SparseTrainingConfig,
                                             forbid_pruning_fields)


@dataclasses.dataclass(frozen=True)
class LayerPlan:
  """Static facts about one sparse layer in one run (hashable: part of the
  traced graph).

  Attributes:
    path: where the layer is in the model (``nnx.iter_graph`` path).
    grid: ``(n_row_blocks, n_col_blocks)``.
    block_size, nnzb: of the layer; ``n_empty`` block positions not stored.
    k_max: the most blocks any update of the run moves (a static bound).
    n_candidates: random positions drawn per update (SET's growth).
    regrow_std: standard deviation of grown values (0: grown at zero).
  """
  path: tuple
  grid: tuple[int, int]
  block_size: int
  nnzb: int
  n_empty: int
  k_max: int
  n_candidates: int
  regrow_std: float


@dataclasses.dataclass
class UpdateInputs:
  """What one layer's update is given besides its arrays (traced values).

  Attributes:
    k: int32 scalar, blocks to move (drop-and-grow) or pruned in all
      (pruning) at this update, from the schedule.
    amount: float32 scalar, ζ_t (drop-and-grow) or the target sparsity s_t.
    chunk_floats: static, RigL's largest gradient slice formed at once.
    position_bits: uint32[2, n_candidates] random draws (methods that
      ``draws_positions``), else None.
    normals: float32[nnzb·bs²] standard normals for grown values (where
      ``regrow_std > 0``), else None.
    gradient: ``(x [rows, n_in], dy [rows, n_out])``, the layer's inputs and
      output gradient on the batch (methods that ``needs_gradient``).
  """
  k: jax.Array
  amount: jax.Array
  chunk_floats: int
  position_bits: jax.Array | None = None
  normals: jax.Array | None = None
  gradient: tuple[jax.Array, jax.Array] | None = None


class Method:
  """The rules of one dynamic-sparsity method (subclass, then
  :func:`register` an instance).

  Class attributes:
    name: the config's ``sparse.method``.
    needs_gradient: updates need the loss gradient at the layers' outputs
      (``SparseOptimizer.update(..., grow_loss=...)``).
    draws_positions: updates draw random block positions.
    keeps_alive_mask: pruned blocks stay stored at zero, marked dead in
      ``SparseOptimizer.alive`` and masked after every step.
  """
  name: str = ""
  needs_gradient = False
  draws_positions = False
  keeps_alive_mask = False

  def check(self, config: SparseTrainingConfig) -> None:
    """Raises ValueError where ``config`` does not suit this method."""
    raise NotImplementedError

  def changes_anything(self, config: SparseTrainingConfig) -> bool:
    return True

  def update_steps(self, config: SparseTrainingConfig, total_steps: int,
                   steps_per_epoch: int | None) -> np.ndarray:
    """int64[n]: the 1-based optimizer steps after which an update comes."""
    raise NotImplementedError

  def amount_at(self, config: SparseTrainingConfig, step: int,
                total_steps: int) -> float:
    """ζ_t or s_t after ``step``."""
    raise NotImplementedError

  def blocks_per_update(self, amount: float, nnzb: int, positions: int
                        ) -> int:
    """Blocks the update moves (or prunes in all) in a layer of ``nnzb``
    stored blocks out of ``positions``."""
    raise NotImplementedError

  def k_max(self, k: np.ndarray, nnzb: int, n_empty: int) -> int:
    """The static bound on ``k`` over the schedule."""
    return int(k.max(initial=0))

  def candidates(self, k_max: int, density: float) -> int:
    """Random positions drawn per update (methods that
    ``draws_positions``) for ``k_max`` blocks on a grid filled to
    ``density``."""
    return 0

  def rewire_layer(self, plan: LayerPlan, layer: dict[str, Any],
                   inputs: UpdateInputs) -> tuple[dict[str, Any], jax.Array]:
    """One layer's update: its new arrays and the blocks moved (int32)."""
    raise NotImplementedError


class DropAndGrow(Method):
  """Methods that drop ``k`` blocks and grow as many at empty positions,
  nnzb fixed (SET, RigL). Shared here: the schedule -- every
  ``update_every`` steps, or (``update_every=0``) after every epoch but the
  last, never after ``end_fraction`` of training, ζ_t constant or
  cosine-decayed ζ/2·(1 + cos(π t / T_end)) -- and the merge that follows
  the growth."""
  default_regrow_init = "set_normal"
  default_zeta_schedule = "constant"
  default_end_fraction = 1.0

  def check(self, config: SparseTrainingConfig) -> None:
    forbid_pruning_fields(config)

  def changes_anything(self, config: SparseTrainingConfig) -> bool:
    return config.zeta > 0

  def update_steps(self, config, total_steps, steps_per_epoch):
    if not self.changes_anything(config):
      return np.zeros(0, np.int64)
    last = config.resolved_end_fraction * total_steps
    if config.update_every == 0:
      if steps_per_epoch is None:
        raise ValueError(
            "update_every=0 rewires after every epoch: give the run's "
            "steps_per_epoch to the schedule")
      candidates = range(steps_per_epoch, total_steps, steps_per_epoch)
    else:
      candidates = range(config.update_every, total_steps, config.update_every)
    return np.array([s for s in candidates if s <= last], np.int64)

  def amount_at(self, config, step, total_steps):
    if config.resolved_zeta_schedule == "constant":
      return config.zeta
    t_end = config.resolved_end_fraction * total_steps
    return config.zeta / 2 * (1 + math.cos(math.pi * min(step / t_end, 1.0)))

  def blocks_per_update(self, amount, nnzb, positions):
    return min(int(round(amount * nnzb)), positions - nnzb)

  def k_max(self, k, nnzb, n_empty):
    return min(int(k.max(initial=0)), nnzb, n_empty)

  @staticmethod
  def regrow(plan: LayerPlan, layer: dict[str, Any], drop: jax.Array,
             grow_rows: jax.Array, grow_cols: jax.Array,
             inputs: UpdateInputs) -> dict[str, Any]:
    """The layer after its ``drop``-marked blocks are replaced by the grown
    positions: row-major order restored, transpose metadata rebuilt, kept
    values and moments carried to their new storage positions, grown values
    from N(0, regrow_std²) (or zero), grown moments zero."""
    values = layer["values"]
    rows, cols, source = _blocks.merge(layer["row_idx"], layer["col_idx"],
                                       drop, grow_rows, grow_cols)
    new = dict(layer, **_blocks.csr_metadata(rows, cols, plan.grid))
    fill = (plan.regrow_std * inputs.normals.reshape(values.shape)
            if plan.regrow_std > 0 else 0.0)
    new["values"] = _blocks.carry_over(values, source, fill)
    new["moments"] = [_blocks.carry_over(m, source, 0.0)
                      for m in layer["moments"]]
    return new


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds ``method`` to the registry under ``method.name``; returns it."""
  if not method.name or method.name in _REGISTRY:
    raise ValueError(f"a method needs a new name, got {method.name!r}")
  _REGISTRY[method.name] = method
  return method


def method_rules(name: str) -> Method:
  """The registered rules of ``name`` (``"set"``, ``"rigl"``, ``"prune"``)."""
  from snn_jax.sparse_training import _prune, _rigl, _set  # noqa: F401 (register)
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(f"no dynamic-sparsity method {name!r}; registered: "
                     f"{sorted(_REGISTRY)}") from None


def registered() -> tuple[str, ...]:
  """The registered method names."""
  method_rules("set")
  return tuple(sorted(_REGISTRY))
