"""Pruning-derived topologies: keep the largest-magnitude weights.

Alford, Robinett, Milechin & Kepner, "Training Behavior of Sparse Neural
Network Topologies", arXiv:1810.00299, compare such masks (from a trained
dense network) with RadiX-Nets. Training the dense network and retraining the
pruned one is the sparse-training package's job; here only the mask is made.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from snn_jax.topology._registry import register
from snn_jax.topology._topology import Topology


def _block_scores(weights: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
  """float64[n_rows, n_cols]: Frobenius norm of every block of ``weights``."""
  w = np.asarray(weights)
  if w.ndim != 2 or w.shape[0] % n_rows or w.shape[1] % n_cols or (
      w.shape[0] // n_rows != w.shape[1] // n_cols):
    raise ValueError(
        f"pruned: weights of shape {w.shape} do not tile into a "
        f"{n_rows}x{n_cols} grid of square blocks; pass the layer's dense "
        "(n_in, n_out) weight matrix"
    )
  bs = w.shape[0] // n_rows
  w = np.abs(w.astype(np.float64))
  if bs == 1:
    return w
  return np.sqrt((w**2).reshape(n_rows, bs, n_cols, bs).sum(axis=(1, 3)))


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Coordinates of the k largest scores (ties broken by position)."""
  flat = scores.ravel()
  k = int(np.clip(k, 1, flat.size))
  # Stable: sort by (-score, index) so equal scores keep the lower index.
  idx = np.argsort(-flat, kind="stable")[:k]
  return np.divmod(np.sort(idx), scores.shape[1])


def _pruned_stack(widths: Sequence[int], *, densities, fan_ins, block_sizes,
                  seed, weights=None, scope: str = "layer"):
  if weights is not None and len(weights) != len(widths) - 1:
    raise ValueError(
        f"pruned: got {len(weights)} weight matrices for {len(widths) - 1} layers"
    )
  if scope == "layer":
    if weights is None:
      raise ValueError("pruned needs weights= (one dense matrix per layer)")
    return [
        Topology(widths[l], widths[l + 1],
                 *pruned(widths[l] // block_sizes[l], widths[l + 1] // block_sizes[l],
                         density=densities[l], fan_in=fan_ins[l], rng=None,
                         layer=l, num_layers=len(widths) - 1,
                         weights=weights[l]),
                 block_size=block_sizes[l], name="pruned",
                 params={"density": densities[l], "scope": "layer", "layer": l})
        for l in range(len(widths) - 1)
    ]
  if scope != "global":
    raise ValueError(f"pruned scope must be 'layer' or 'global', got {scope!r}")
  if weights is None:
    raise ValueError("pruned needs weights= (one dense matrix per layer)")
  if len(set(d for d in densities)) != 1 or densities[0] is None:
    raise ValueError("global pruning takes one overall density")
  scores = [_block_scores(w, widths[l] // block_sizes[l],
                          widths[l + 1] // block_sizes[l])
            for l, w in enumerate(weights)]
  # Rank per weight, not per block: a block stands for bs^2 weights.
  per_weight = np.concatenate([
      np.repeat(s.ravel() / block_sizes[l], block_sizes[l] ** 2)
      for l, s in enumerate(scores)])
  k = int(round(densities[0] * per_weight.size))
  if k < 1:
    raise ValueError("global pruning density keeps no weight")
  threshold = np.partition(per_weight, per_weight.size - k)[per_weight.size - k]
  out = []
  for l, s in enumerate(scores):
    keep = s / block_sizes[l] >= threshold
    if not keep.any():  # Keep the layer connected: its best block survives.
      keep.flat[np.argmax(s)] = True
    rows, cols = np.nonzero(keep)
    out.append(Topology(widths[l], widths[l + 1], rows, cols,
                        block_size=block_sizes[l], name="pruned",
                        params={"density": densities[0], "scope": "global",
                                "layer": l}))
  return out


@register("pruned", stack_fn=_pruned_stack)
def pruned(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
           weights=None, scope: str = "layer"):
  """Mask of the largest-magnitude weights of ``weights`` (float[n_in,
  n_out]), keeping ``round(density * n_blocks)`` blocks (block score: the
  Frobenius norm of the block; at block_size 1 the absolute weight).

  ``scope="global"`` (only through :func:`make_stack`, with one weight
  matrix per layer) ranks all layers' weights together with one threshold,
  so per-layer densities differ; ``"layer"`` prunes each layer to density.
  """
  if weights is None:
    raise ValueError("pruned needs weights= (the dense weight matrix)")
  if scope != "layer":
    raise ValueError("scope='global' prunes a whole stack: use make_stack(...)")
  scores = _block_scores(weights, n_rows, n_cols)
  if fan_in is not None:
    cols = np.repeat(np.arange(n_cols), fan_in)
    rows = np.argsort(-scores, axis=0, kind="stable")[:fan_in].T.ravel()
    return rows, cols
  if density is None:
    raise ValueError("pruned needs density= or fan_in=")
  return _top_k(scores, round(density * n_rows * n_cols))
