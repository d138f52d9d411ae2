"""How a run's connections evolve: :class:`SparseTrainingConfig`, one part
of a ``TrainConfig`` (``sparse``) and the rules of
:func:`~snn_jax.sparse_training.set`, :func:`~snn_jax.sparse_training.rigl`
and :func:`~snn_jax.sparse_training.prune`. The methods' definitions and
their papers are in ``_set``, ``_rigl`` and ``_prune``; the engine that
applies them is :class:`~snn_jax.sparse_training.SparseOptimizer`."""

from __future__ import annotations

import dataclasses

from snn_jax.utils.config import ConfigPart

METHODS = ("static", "set", "rigl", "prune")
REGROW_INITS = ("zero", "set_normal", "sparse_he")
ZETA_SCHEDULES = ("constant", "cosine")
SET_REGROW_STD = 0.1  # Mocanu et al.'s reference code: randn() / 10.


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
    if not 0.0 <= self.zeta < 1.0:
      raise ValueError(f"zeta (the fraction rewired) must be in [0, 1), got "
                       f"{self.zeta}")
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
    if self.method == "static":
      forbid_pruning_fields(self)
    else:
      self.rules.check(self)

  @property
  def resolved_seed(self) -> int:
    return 0 if self.seed is None else self.seed

  @property
  def rules(self):
    """The method's rules (:class:`~snn_jax.sparse_training.Method` from
    the registry; None for ``"static"``)."""
    from snn_jax.sparse_training._method import method_rules
    return None if self.method == "static" else method_rules(self.method)

  @property
  def dynamic(self) -> bool:
    """Whether the connections change during the run: a method other than
    static, and for drop-and-grow a nonzero ζ."""
    return self.rules is not None and self.rules.changes_anything(self)

  @property
  def resolved_regrow_init(self) -> str:
    return self.regrow_init or getattr(self.rules, "default_regrow_init",
                                       "set_normal")

  @property
  def resolved_zeta_schedule(self) -> str:
    return self.zeta_schedule or getattr(self.rules, "default_zeta_schedule",
                                         "constant")

  @property
  def resolved_end_fraction(self) -> float:
    if self.end_fraction is not None:
      return self.end_fraction
    return getattr(self.rules, "default_end_fraction", 1.0)


def forbid_pruning_fields(config: SparseTrainingConfig) -> None:
  """The pruning fields are for ``"prune"`` only: a clear error elsewhere."""
  if config.prune_density is not None or config.prune_end_step is not None:
    raise ValueError(f"prune_density and prune_end_step apply to method "
                     f"'prune', not {config.method!r}")
