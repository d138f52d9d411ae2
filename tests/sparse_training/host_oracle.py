"""Test oracle: drop-and-grow on one layer's blocks in host-side NumPy, at
fixed nnzb -- the rules of ``snn_jax.sparse_training`` written the plain
way (whole arrays, Python control flow, explicit errors), against which the
engine's static-shape device rules are checked. Not part of the package.

A layer is its block coordinates ``rows, cols`` (int[nnzb], row-major
sorted, as ``Topology`` keeps them) and block values ``values[nnzb, bs, bs]``.
One rewiring step

  1. drops ``k`` stored blocks (:func:`set_drop` or :func:`magnitude_drop`),
  2. grows ``k`` blocks at positions that were empty *before* the step
     (:func:`grow_random` or :func:`grow_by_score`) -- a just-dropped block is
     never regrown in the same step, so every step really moves ``k`` blocks,
  3. merges kept and grown blocks back into row-major order
     (:func:`merge`), returning for every new block the index of the old
     block it continues (``-1`` for grown ones), which is how values and
     optimizer state follow their weights.

At block size 1 a block is one weight; above it, blocks are scored by their
Frobenius norm (the *block* variant, which keeps the fast block kernels).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Above this many block positions the empty ones are found by rejection
# sampling instead of a dense occupancy mask.
_DENSE_OCCUPANCY_LIMIT = 1 << 24


def block_norms(values: np.ndarray) -> np.ndarray:
  """float64[nnzb]: Frobenius norm of every block of ``values[nnzb, bs, bs]``."""
  v = np.asarray(values, dtype=np.float64)
  return np.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(axis=1))


def _check_zeta(zeta: float) -> None:
  if not 0.0 <= zeta < 1.0:
    raise ValueError(f"zeta (the fraction rewired) must be in [0, 1), got {zeta}")


def set_drop(values: np.ndarray, zeta: float) -> np.ndarray:
  """SET's drop rule: bool[nnzb], True for blocks to remove.

  Mocanu et al. 2018 ("Scalable training of artificial neural networks with
  adaptive sparse connectivity inspired by network science", Nature Comm.)
  remove the fraction ``zeta`` of the positive weights closest to zero and
  the fraction ``zeta`` of the negative weights closest to zero (the
  "smallest positive and largest negative" weights). Exact zeros count as
  positive. At block size > 1 signs do not apply: the ``round(zeta*nnzb)``
  blocks of smallest Frobenius norm are removed (:func:`magnitude_drop`).
  """
  _check_zeta(zeta)
  values = np.asarray(values)
  if values.shape[-1] > 1:
    return magnitude_drop(values, int(round(zeta * values.shape[0])))
  w = values.reshape(-1).astype(np.float64)
  drop = np.zeros(w.shape, bool)
  pos = np.flatnonzero(w >= 0)
  neg = np.flatnonzero(w < 0)
  k_pos = int(round(zeta * pos.size))
  k_neg = int(round(zeta * neg.size))
  # Stable sorts: ties are broken by storage position, so the rule is exact.
  drop[pos[np.argsort(w[pos], kind="stable")[:k_pos]]] = True
  drop[neg[np.argsort(-w[neg], kind="stable")[:k_neg]]] = True
  return drop


def magnitude_drop(values: np.ndarray, k: int) -> np.ndarray:
  """bool[nnzb]: True for the ``k`` blocks of smallest norm (ties: lower
  storage index first). RigL's drop rule (Evci et al. 2020) and SET's block
  variant."""
  nnzb = np.asarray(values).shape[0]
  if not 0 <= k <= nnzb:
    raise ValueError(f"cannot drop {k} of {nnzb} blocks")
  drop = np.zeros(nnzb, bool)
  drop[np.argsort(block_norms(values), kind="stable")[:k]] = True
  return drop


def _flat(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
  return np.asarray(rows, np.int64) * n_cols + np.asarray(cols, np.int64)


def grow_random(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """``k`` distinct block positions drawn uniformly from those not in
  ``(rows, cols)``; ``shape`` is the block grid (n_row_blocks, n_col_blocks).
  SET's growth rule. Returns (rows, cols) int64[k], row-major sorted."""
  n_r, n_c = shape
  total = n_r * n_c
  occupied = np.unique(_flat(rows, cols, n_c))
  n_empty = total - occupied.size
  if k > n_empty:
    raise ValueError(f"cannot grow {k} blocks: only {n_empty} positions are empty")
  if k == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  if total <= _DENSE_OCCUPANCY_LIMIT:
    free = np.ones(total, bool)
    free[occupied] = False
    picked = rng.choice(np.flatnonzero(free), size=k, replace=False)
  else:  # Huge sparse grids: rejection sampling, vectorised in rounds.
    picked = np.zeros(0, np.int64)
    while picked.size < k:
      need = k - picked.size
      cand = rng.integers(0, total, size=2 * need + 16, dtype=np.int64)
      cand = cand[~np.isin(cand, occupied)]
      cand = np.setdiff1d(np.unique(cand), picked, assume_unique=True)
      cand = rng.permutation(cand)[:need]
      picked = np.concatenate([picked, cand])
  picked = np.sort(picked)
  return np.divmod(picked, n_c)


def grow_by_score(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
  """The ``k`` empty block positions of largest ``scores[n_row_blocks,
  n_col_blocks]`` (ties: lower row-major position first). RigL's growth rule,
  with scores = the norm of the dense gradient on each block."""
  scores = np.asarray(scores, np.float64)
  n_c = scores.shape[1]
  flat = scores.ravel().copy()
  flat[_flat(rows, cols, n_c)] = -np.inf
  n_empty = int(np.isfinite(flat).sum()) if flat.size else 0
  if k > n_empty:
    raise ValueError(f"cannot grow {k} blocks: only {n_empty} positions are empty")
  picked = np.sort(np.argsort(-flat, kind="stable")[:k])
  return np.divmod(picked, n_c)


# Largest dense slice X^T dY[:, chunk] grow_by_gradient materialises, in
# floats (64 MiB of float32).
GRADIENT_CHUNK_FLOATS = 1 << 24


def grow_by_gradient(rows: np.ndarray, cols: np.ndarray, x: np.ndarray,
                     dy: np.ndarray, k: int, block_size: int = 1, *,
                     chunk_floats: int = GRADIENT_CHUNK_FLOATS
                     ) -> tuple[np.ndarray, np.ndarray]:
  """RigL's growth rule without the dense gradient: the ``k`` empty block
  positions where the block norm of ``G = xᵀ·dy`` is largest, the same
  choice (and tie order) as :func:`grow_by_score` on the scores of the
  whole ``G``, but with ``G`` formed a few block columns at a time and a
  running top-k over the empty positions -- O(n_in·chunk + k) memory
  instead of O(n_in·n_out), so RigL reaches layers whose dense gradient
  would not fit (Evci et al. 2020 compute the dense gradient).

  Args:
    rows, cols: the stored blocks (int[nnzb], row-major sorted).
    x: float[batch, n_in], the layer's input on the batch.
    dy: float[batch, n_out], the loss gradient at the layer's output.
    k: blocks to grow.
    block_size: the layer's block size.
    chunk_floats: at most this many entries of ``G`` at once.
  """
  x = np.asarray(x, np.float32)
  dy = np.asarray(dy, np.float32)
  bs = block_size
  n_rb, n_cb = x.shape[1] // bs, dy.shape[1] // bs
  occupied = _flat(rows, cols, n_cb)
  n_empty = n_rb * n_cb - len(np.unique(occupied))
  if k > n_empty:
    raise ValueError(f"cannot grow {k} blocks: only {n_empty} positions are empty")
  if k == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  per_chunk = max(1, chunk_floats // (x.shape[1] * bs))
  rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
  by_col = np.argsort(cols, kind="stable")
  col_starts = np.searchsorted(cols[by_col], np.arange(n_cb + 1))
  best_score = np.zeros(0)
  best_flat = np.zeros(0, np.int64)
  threshold = -np.inf  # the k-th best score so far, once k are held
  for c0 in range(0, n_cb, per_chunk):
    c1 = min(n_cb, c0 + per_chunk)
    g = x.T @ dy[:, c0 * bs:c1 * bs]  # [n_in, (c1-c0)*bs]
    if bs == 1:  # |g| in float32 orders exactly as sqrt(g**2) in float64
      score = np.abs(g, out=g)
    else:
      score = np.sqrt((g.reshape(n_rb, bs, c1 - c0, bs) ** 2).sum(
          axis=(1, 3), dtype=np.float64))
    stored = by_col[col_starts[c0]:col_starts[c1]]
    score[rows[stored], cols[stored] - c0] = -np.inf  # occupied: never grown
    r, c = _chunk_candidates(score, k, threshold)
    score = np.concatenate([best_score, score[r, c].astype(np.float64)])
    flat = np.concatenate([best_flat, r * n_cb + c + c0])
    best_score, best_flat = _top_k(score, flat, k)
    if len(best_score) == k:
      threshold = best_score.min()
  picked = np.sort(best_flat)
  return np.divmod(picked, n_cb)


def _chunk_candidates(score: np.ndarray, k: int, threshold: float
                      ) -> tuple[np.ndarray, np.ndarray]:
  """``(r, c)`` of the entries of one chunk's ``score[n_rb, cols]`` that
  can still be among the ``k`` best (largest score, ties to the lower
  row-major position) given the k-th best ``threshold`` so far: at most
  about ``k`` of them, so memory stays O(k) even when most scores tie (a
  layer whose outputs mostly get no gradient scores zero nearly
  everywhere; taking every tied zero of a 2**24-entry chunk cost ~1 GB)."""
  cut = max(threshold, -np.finfo(np.float64).max)
  above = score > cut
  if np.count_nonzero(above) > k:  # the chunk's own k-th best cuts deeper
    flat_score = score.reshape(-1)
    cut = float(np.partition(flat_score, flat_score.size - k)[
        flat_score.size - k])
    above = score > cut
  r, c = np.nonzero(above)
  need = k - len(r)
  if need > 0 and cut > -np.finfo(np.float64).max:
    # Of the entries tied at the cut only the first ``need`` in row-major
    # order can be chosen; found a slab of rows at a time.
    tied = score == cut
    slab = max(1, (1 << 20) // max(1, score.shape[1]))
    parts_r, parts_c = [r], [c]
    for r0 in range(0, score.shape[0], slab):
      tr, tc = np.nonzero(tied[r0:r0 + slab])
      parts_r.append(tr[:need] + r0)
      parts_c.append(tc[:need])
      need -= len(parts_r[-1])
      if need == 0:
        break
    r, c = np.concatenate(parts_r), np.concatenate(parts_c)
  return r, c


def _top_k(score: np.ndarray, flat: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
  """The ``k`` entries first in (-score, flat) order -- largest score
  first, ties to the lower position -- in no particular order, in linear
  time (a partition on the score, then on the position among the entries
  tied at the cut)."""
  if len(score) <= k:
    return score, flat
  cut = np.partition(score, len(score) - k)[len(score) - k]  # k-th largest
  above = np.flatnonzero(score > cut)
  tied = np.flatnonzero(score == cut)
  need = k - len(above)
  if need < len(tied):
    tied = tied[np.argpartition(flat[tied], need - 1)[:need]]
  keep = np.concatenate([above, tied])
  return score[keep], flat[keep]


@dataclasses.dataclass(frozen=True)
class Rewiring:
  """The outcome of one drop-and-grow step on one layer.

  Attributes:
    rows, cols: int32[nnzb] the new block coordinates, row-major sorted.
    source: int64[nnzb] for each new block, the index of the old block it
      continues, or -1 for a grown block.
    dropped: int64[k] old indices of the dropped blocks.
  """
  rows: np.ndarray
  cols: np.ndarray
  source: np.ndarray
  dropped: np.ndarray

  @property
  def grown(self) -> np.ndarray:
    """Indices (into the new blocks) of the grown blocks."""
    return np.flatnonzero(self.source < 0)


def merge(rows: np.ndarray, cols: np.ndarray, drop: np.ndarray,
          grow_rows: np.ndarray, grow_cols: np.ndarray,
          n_cols: int) -> Rewiring:
  """Kept blocks plus grown blocks, row-major sorted, with their sources."""
  drop = np.asarray(drop, bool)
  if int(drop.sum()) != len(grow_rows):
    raise ValueError(f"dropping {int(drop.sum())} blocks but growing "
                     f"{len(grow_rows)}: nnzb would change")
  kept = np.flatnonzero(~drop)
  key = np.concatenate([_flat(rows[kept], cols[kept], n_cols),
                        _flat(grow_rows, grow_cols, n_cols)])
  src = np.concatenate([kept, np.full(len(grow_rows), -1, np.int64)])
  order = np.argsort(key, kind="stable")
  key, src = key[order], src[order]
  if key.size > 1 and (np.diff(key) == 0).any():
    raise ValueError("a grown block is already stored")
  new_rows, new_cols = np.divmod(key, n_cols)
  return Rewiring(new_rows.astype(np.int32), new_cols.astype(np.int32), src,
                  np.flatnonzero(drop))


def carry_over(old: np.ndarray, source: np.ndarray,
               fill: np.ndarray | float = 0.0) -> np.ndarray:
  """New per-block array: ``old[source]`` for continued blocks, ``fill`` (an
  array of the grown blocks' values, or a scalar) for grown ones."""
  old = np.asarray(old)
  out = old[np.maximum(source, 0)].copy()
  grown = source < 0
  out[grown] = fill
  return out
