"""The registry that makes every topology generator reachable by name.

A generator is a function

    fn(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers, **params)
        -> (rows, cols)

over *block units* (``n_rows = n_in // block_size``); ``fan_in`` arrives in
block units too, ``rng`` is a seeded ``np.random.Generator``, and ``layer`` /
``num_layers`` place the layer in a stack (staged constructions such as
butterflies use them). It returns int arrays of block coordinates; ``make``
wraps them in a :class:`Topology`. Generators raise ``ValueError`` for
requests their construction cannot meet.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from snn_jax.topology._topology import Topology

GeneratorFn = Callable[..., tuple[np.ndarray, np.ndarray]]
StackFn = Callable[..., list[Topology]]

_COMMON = ("density", "fan_in", "rng", "layer", "num_layers")


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
  name: str
  fn: GeneratorFn
  stack_fn: StackFn | None = None

  @property
  def params(self) -> tuple[str, ...]:
    """Names of the generator's own keyword parameters."""
    sig = inspect.signature(self.fn)
    return tuple(
        p for p, v in sig.parameters.items()
        if v.kind == inspect.Parameter.KEYWORD_ONLY and p not in _COMMON
    )

  @property
  def doc(self) -> str:
    return inspect.getdoc(self.fn) or ""


_REGISTRY: dict[str, GeneratorSpec] = {}


def register(name: str, *, stack_fn: StackFn | None = None):
  """Decorator registering a generator under ``name`` (see module doc)."""

  def wrap(fn: GeneratorFn) -> GeneratorFn:
    if name in _REGISTRY:
      raise ValueError(f"topology {name!r} is already registered")
    _REGISTRY[name] = GeneratorSpec(name, fn, stack_fn)
    return fn

  return wrap


def names() -> list[str]:
  """Sorted names of every registered topology generator."""
  return sorted(_REGISTRY)


def spec(name: str) -> GeneratorSpec:
  """The registry entry for ``name``; unknown names list the valid ones."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"unknown topology {name!r}; known: {', '.join(names())}"
    ) from None


def _check_params(s: GeneratorSpec, params: dict[str, Any]) -> None:
  unknown = set(params) - set(s.params)
  if unknown:
    raise ValueError(
        f"topology {s.name!r} got unknown parameter(s) {sorted(unknown)}; it "
        f"accepts: {', '.join(s.params) or '(none beyond density/fan_in)'}"
    )


def _block_units(n_in: int, n_out: int, block_size: int) -> tuple[int, int]:
  if not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise ValueError(f"block_size must be a positive int, got {block_size!r}")
  for label, n in (("n_in", n_in), ("n_out", n_out)):
    if not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueError(f"{label} must be a positive int, got {n!r}")
    if n % block_size:
      raise ValueError(
          f"{label}={n} is not divisible by block_size={block_size}; pick "
          "widths that are multiples of the block size"
      )
  return n_in // block_size, n_out // block_size


def _fan_in_blocks(fan_in: int | None, block_size: int) -> int | None:
  if fan_in is None:
    return None
  if fan_in % block_size:
    raise ValueError(
        f"fan_in={fan_in} is not a multiple of block_size={block_size}: a "
        "block-level topology has a fan-in of whole blocks"
    )
  return fan_in // block_size


def _generate(
    s: GeneratorSpec, n_in: int, n_out: int, *, density, fan_in, block_size,
    rng, layer, num_layers, params,
) -> Topology:
  n_rows, n_cols = _block_units(n_in, n_out, block_size)
  if density is not None and fan_in is not None:
    raise ValueError("give density or fan_in, not both")
  if density is not None and not (0.0 < float(density) <= 1.0):
    raise ValueError(f"density must be in (0, 1], got {density}")
  rows, cols = s.fn(
      n_rows, n_cols, density=density,
      fan_in=_fan_in_blocks(fan_in, block_size), rng=rng, layer=layer,
      num_layers=num_layers, **params,
  )
  record = dict(params)
  record.update(density=density, fan_in=fan_in, layer=layer)
  record = {k: v for k, v in record.items() if not isinstance(v, np.ndarray)}
  return Topology(n_in, n_out, rows, cols, block_size=block_size,
                  name=s.name, params=record)


def make(
    name: str,
    n_in: int,
    n_out: int,
    *,
    density: float | None = None,
    fan_in: int | None = None,
    block_size: int = 1,
    seed: int = 0,
    **params: Any,
) -> Topology:
  """Builds one layer's topology by registry name.

  Args:
    name: a name from :func:`names`.
    n_in, n_out: layer widths in neurons.
    density: fraction of the ``n_in * n_out`` connections to keep (each
      generator documents how exactly it can meet it).
    fan_in: alternatively, the number of inputs per output neuron (a multiple
      of ``block_size``).
    block_size: build the graph over blocks of this many neurons.
    seed: seed of the generator's ``np.random.Generator`` (deterministic).
    **params: the generator's own parameters (see its docstring).

  Returns:
    A :class:`Topology`.

  Example:
    >>> t = make("erdos_renyi", 784, 1000, density=0.05, seed=1)
    >>> round(t.density, 2)
    0.05
  """
  s = spec(name)
  _check_params(s, params)
  rng = np.random.default_rng([int(seed), 0])
  return _generate(s, n_in, n_out, density=density, fan_in=fan_in,
                   block_size=block_size, rng=rng, layer=0, num_layers=1,
                   params=params)


def _per_layer(value, n_layers: int, label: str) -> list:
  if isinstance(value, (list, tuple)):
    if len(value) != n_layers:
      raise ValueError(
          f"{label} has {len(value)} entries but the stack has {n_layers} "
          "layers"
      )
    return list(value)
  return [value] * n_layers


def make_stack(
    name: str,
    widths: Sequence[int],
    *,
    density: float | Sequence[float] | None = None,
    fan_in: int | Sequence[int] | None = None,
    block_size: int | Sequence[int] = 1,
    seed: int = 0,
    **params: Any,
) -> list[Topology]:
  """One topology per layer of an MLP with the given widths.

  ``density``, ``fan_in`` and ``block_size`` may be scalars (same for every
  layer) or one value per layer. Layer ``l`` draws from its own stream
  ``default_rng([seed, l + 1])``, so a stack is deterministic for a seed.
  Generators with a whole-stack construction (RadiX-Net's mixed radices,
  global magnitude pruning) build all layers together.
  """
  widths = [int(w) for w in widths]
  if len(widths) < 2:
    raise ValueError(f"widths needs at least two entries, got {widths}")
  s = spec(name)
  _check_params(s, params)
  n_layers = len(widths) - 1
  densities = _per_layer(density, n_layers, "density")
  fan_ins = _per_layer(fan_in, n_layers, "fan_in")
  block_sizes = _per_layer(block_size, n_layers, "block_size")
  if s.stack_fn is not None:
    out = s.stack_fn(widths, densities=densities, fan_ins=fan_ins,
                     block_sizes=block_sizes, seed=seed, **params)
    if out is not None:
      return out
  return [
      _generate(s, widths[l], widths[l + 1], density=densities[l],
                fan_in=fan_ins[l], block_size=block_sizes[l],
                rng=np.random.default_rng([int(seed), l + 1]), layer=l,
                num_layers=n_layers, params=params)
      for l in range(n_layers)
  ]
