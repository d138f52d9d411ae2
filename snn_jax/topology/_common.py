"""Vectorised sampling helpers shared by the generators (NumPy only)."""

from __future__ import annotations

import numpy as np

# Above this many entries a dense random matrix is not drawn.
_DENSE_DRAW_LIMIT = 1 << 24


def degree_from_request(
    n_units: int, density: float | None, fan_in: int | None, *, label: str,
    default_density: float | None = None,
) -> int:
  """Per-unit degree d from ``density`` (``round(density * n_units)``) or ``fan_in``.

  Raises ValueError when neither is given (and no default) or d is not in
  ``[1, n_units]``.
  """
  if fan_in is None and density is None:
    density = default_density
  if fan_in is not None:
    d = int(fan_in)
  elif density is not None:
    d = int(round(float(density) * n_units))
  else:
    raise ValueError(f"{label} needs density= or fan_in=")
  if not 1 <= d <= n_units:
    raise ValueError(
        f"{label}: the requested density/fan_in gives degree {d}, outside "
        f"[1, {n_units}] for {n_units} units on that side"
    )
  return d


def sample_distinct_per_group(
    n_groups: int, n_choices: int, k: int, rng: np.random.Generator
) -> np.ndarray:
  """int64[n_groups, k]: in each row, k distinct values from [0, n_choices).

  Small problems draw a random matrix and keep the k smallest keys; large ones
  draw with replacement and redraw only the collided entries (vectorised),
  which converges in a few rounds when k << n_choices. When k is more than
  half of n_choices the complement is sampled instead.
  """
  if not 0 <= k <= n_choices:
    raise ValueError(f"cannot pick {k} distinct values out of {n_choices}")
  if k == n_choices:
    return np.broadcast_to(np.arange(n_choices), (n_groups, k)).copy()
  if n_groups * n_choices <= _DENSE_DRAW_LIMIT:
    keys = rng.random((n_groups, n_choices))
    return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1) if k else (
        np.zeros((n_groups, 0), np.int64))
  if 2 * k > n_choices:
    raise ValueError(
        f"sampling {k} of {n_choices} per group for {n_groups} groups would "
        "need a dense draw larger than 2**24 entries; lower the density"
    )
  out = rng.integers(0, n_choices, size=(n_groups, k))
  for _ in range(200):
    out.sort(axis=1)
    dup = np.zeros_like(out, dtype=bool)
    dup[:, 1:] = out[:, 1:] == out[:, :-1]
    n_dup = int(dup.sum())
    if n_dup == 0:
      return out
    out[dup] = rng.integers(0, n_choices, size=n_dup)
  raise RuntimeError("sample_distinct_per_group did not converge")  # pragma: no cover


def sample_distinct(population: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """int64[k]: a uniformly random k-subset of [0, population), sorted."""
  if not 0 <= k <= population:
    raise ValueError(f"cannot pick {k} distinct values out of {population}")
  if population <= _DENSE_DRAW_LIMIT:
    return np.sort(rng.choice(population, size=k, replace=False))
  if 2 * k > population:
    raise ValueError(f"{k} of {population} is too dense to sample sparsely")
  chosen = np.unique(rng.integers(0, population, size=k + k // 16 + 64))
  while chosen.size < k:
    more = rng.integers(0, population, size=(k - chosen.size) * 2 + 64)
    chosen = np.unique(np.concatenate([chosen, more]))
  keep = rng.choice(chosen.size, size=k, replace=False)
  return np.sort(chosen[keep])


def fold(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int):
  """Maps a square construction on Z_m onto (n_rows, n_cols) by reduction
  modulo each side (duplicate edges merge)."""
  return rows % n_rows, cols % n_cols


def nearest_divisor(n: int, target: float) -> int:
  """The divisor of n closest to ``target`` on a log scale (>= 1)."""
  divs = np.array([d for d in range(1, int(np.sqrt(n)) + 1) if n % d == 0])
  divs = np.unique(np.concatenate([divs, n // divs]))
  target = max(float(target), 1.0)
  return int(divs[np.argmin(np.abs(np.log(divs) - np.log(target)))])
