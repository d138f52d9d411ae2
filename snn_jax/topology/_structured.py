"""Small-world, block-diagonal + shuffle and Clos-style topologies.

These are the structured families NeuroFabric (Isakov & Kinsy,
arXiv:2002.08339) sets against random graphs: local connectivity with a few
long-range shortcuts (Watts & Strogatz, Nature 393, 1998), grouped layers
joined by a channel shuffle (as in ShuffleNet), and the staged Clos network.
"""

from __future__ import annotations

import numpy as np

from snn_jax.topology._common import degree_from_request, fold
from snn_jax.topology._registry import register


@register("small_world")
def small_world(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
                beta: float = 0.1):
  """Watts–Strogatz rewiring of a bipartite ring lattice.

  Start: unit r joins the d nearest units ``r - d//2 .. r + d - 1 - d//2``
  (mod m, m = max side; the smaller side is folded). Then every edge is,
  with probability ``beta``, rewired to a uniformly random output not already
  joined to its input. ``beta=0`` is the lattice, ``beta=1`` close to random.
  Fan-out of each input is kept.
  """
  if not 0.0 <= beta <= 1.0:
    raise ValueError(f"small_world beta must be in [0, 1], got {beta}")
  m = max(n_rows, n_cols)
  d = degree_from_request(min(n_rows, n_cols), density,
                          None if fan_in is None else fan_in * n_cols // m,
                          label="small_world")
  offsets = np.arange(d, dtype=np.int64) - d // 2
  r = np.repeat(np.arange(m, dtype=np.int64), d)
  c = (r + np.tile(offsets, m)) % m
  rows, cols = fold(r, c, n_rows, n_cols)
  key = np.unique(rows * n_cols + cols)
  rows, cols = np.divmod(key, n_cols)
  rewire = rng.random(rows.size) < beta
  cols = cols.copy()
  cols[rewire] = rng.integers(0, n_cols, size=int(rewire.sum()))
  # Redraw rewired edges that collide with an existing edge of their input.
  for _ in range(1000):
    k = rows * n_cols + cols
    order = np.argsort(k, kind="stable")
    sk = k[order]
    dup = order[1:][sk[1:] == sk[:-1]]
    # Move only the rewired member of a colliding pair.
    bad = np.unique(np.where(rewire[dup], dup, order[:-1][sk[1:] == sk[:-1]]))
    if bad.size == 0:
      return rows, cols
    cols[bad] = rng.integers(0, n_cols, size=bad.size)
    rewire[bad] = True
  raise ValueError("small_world: rewiring did not converge; lower the density")


def _groups_from(n_rows, n_cols, density, groups, label):
  if groups is None:
    if density is None:
      raise ValueError(f"{label} needs groups= or density=")
    groups = int(round(1.0 / density))
  g = int(groups)
  if not 1 <= g <= min(n_rows, n_cols):
    raise ValueError(
        f"{label}: groups={g} must be in [1, {min(n_rows, n_cols)}] for a "
        f"({n_rows}, {n_cols}) layer"
    )
  return g


def _group_of(n: int, g: int) -> np.ndarray:
  """Group of each of n units split into g consecutive near-equal groups."""
  return np.arange(n, dtype=np.int64) * g // n


def _block_diagonal(n_rows, n_cols, g):
  """Edges joining every input of group k to every output of group k."""
  rg, cg = _group_of(n_rows, g), _group_of(n_cols, g)
  r_start = np.searchsorted(rg, np.arange(g + 1))
  c_start = np.searchsorted(cg, np.arange(g + 1))
  rows, cols = [], []
  for k in range(g):  # One dense tile per group (g is small).
    r, c = np.meshgrid(np.arange(r_start[k], r_start[k + 1]),
                       np.arange(c_start[k], c_start[k + 1]), indexing="ij")
    rows.append(r.ravel())
    cols.append(c.ravel())
  return np.concatenate(rows), np.concatenate(cols)


def _shuffle(units: np.ndarray, n: int, g: int) -> np.ndarray:
  """Channel shuffle: the i-th unit of group k moves to position i*g + k
  (generalised to unequal groups by sorting on (i, k))."""
  grp = _group_of(n, g)
  pos = np.arange(n) - np.searchsorted(grp, grp)
  new_position = np.empty(n, dtype=np.int64)
  new_position[np.lexsort((grp, pos))] = np.arange(n)
  return new_position[units]


@register("block_diag_shuffle")
def block_diag_shuffle(n_rows, n_cols, *, density, fan_in, rng, layer,
                       num_layers, groups: int | None = None,
                       shuffle: bool = True):
  """Grouped layer: ``groups`` diagonal blocks, each group of inputs fully
  connected to one group of outputs, followed by a channel shuffle of the
  outputs (``shuffle=True``) so the next layer's groups mix every group.
  Density ``1 / groups`` exactly when groups divide both widths (default
  ``groups = round(1/density)``); otherwise groups differ by one unit.
  """
  g = _groups_from(n_rows, n_cols, density, groups, "block_diag_shuffle")
  rows, cols = _block_diagonal(n_rows, n_cols, g)
  if shuffle:
    cols = _shuffle(cols, n_cols, g)
  return rows, cols


@register("clos")
def clos(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
         groups: int | None = None):
  """Three-stage Clos network laid over consecutive layers.

  Stage ``layer mod 3``: 0 (ingress) and 2 (egress) are block diagonal with
  ``groups`` switches; 1 (middle) connects port k of every ingress switch to
  middle switch k -- a block diagonal taken after the shuffle of the inputs.
  With ``n = groups^2`` units per layer, stages 0 and 1 already join every
  input to every output, and the three stages give every input-output pair
  the same number of paths. Density ``1 / groups`` per stage.
  """
  g = _groups_from(n_rows, n_cols, density, groups, "clos")
  rows, cols = _block_diagonal(n_rows, n_cols, g)
  if layer % 3 == 1:
    rows = _shuffle(rows, n_rows, g)
  return rows, cols
