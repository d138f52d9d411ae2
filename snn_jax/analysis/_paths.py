"""Data-free path statistics of a stack of layers (NeuroFabric's view).

Isakov & Kinsy (NeuroFabric, arXiv:2002.08339) ask of a sparse topology that
every input can reach every output and that the number of paths between
input-output pairs be as uniform as possible; RadiX-Net (arXiv:1809.05242)
proves both for its construction. ``path_stats`` measures them.

The path-count matrix is ``P = B_1 B_2 ... B_L`` (n_in x n_out), counted in
float64 (exact below 2**53 paths per pair).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from snn_jax.analysis._spectral import _as_stack
from snn_jax.topology import Topology

# Above this many (input, output) pairs the path matrix is evaluated on a
# random sample of input rows (reported as ``sampled_inputs``).
_FULL_PAIRS_LIMIT = 1 << 25


def path_matrix(stack: Sequence[Topology], input_rows: np.ndarray | None = None) -> np.ndarray:
  """float64[n_rows, n_out]: number of input->output paths through the stack,
  for all inputs or the given ``input_rows``."""
  stack = _as_stack(stack)
  m = stack[0].biadjacency().astype(np.float64)
  if input_rows is not None:
    m = m[input_rows]
  for t in stack[1:]:
    m = m @ t.biadjacency()
    if sp.issparse(m) and m.nnz > 0.3 * m.shape[0] * m.shape[1]:
      m = m.toarray()
  return m.toarray() if sp.issparse(m) else np.asarray(m)


def _summary(x: np.ndarray) -> dict[str, float]:
  x = np.asarray(x, dtype=np.float64)
  mean = float(x.mean())
  return {"min": float(x.min()), "max": float(x.max()), "mean": mean,
          "std": float(x.std()), "cv": float(x.std() / mean) if mean else float("inf")}


def path_stats(stack: Topology | Sequence[Topology], *, seed: int = 0) -> dict[str, Any]:
  """Reachability and path-count uniformity across a stack.

  Returns a dict:
    ``reachability``: fraction of (input, output) pairs joined by >= 1 path;
    ``paths``: min/max/mean/std/cv of the path counts over all pairs (cv =
      std/mean; 0 means perfectly uniform, as in a full RadiX-Net system);
    ``paths_per_input`` / ``paths_per_output``: summaries of the total path
      counts leaving each input / reaching each output (exact, from
      matrix-vector products, whatever the size);
    ``dead_units``: hidden units with zero fan-in or zero fan-out, per layer;
    ``sampled_inputs``: number of input rows the pair statistics used (all
      of them unless n_in * n_out > 2**25).
  """
  stack = _as_stack(stack)
  n_in, n_out = stack[0].n_in, stack[-1].n_out
  # Exact per-input and per-output totals by vector products.
  ones_out = np.ones(n_out)
  per_input = ones_out
  for t in reversed(stack):
    per_input = t.biadjacency() @ per_input
  per_output = np.ones(n_in)
  for t in stack:
    per_output = t.biadjacency().T @ per_output
  rows = None
  if n_in * n_out > _FULL_PAIRS_LIMIT:
    k = max(1, _FULL_PAIRS_LIMIT // n_out)
    rows = np.sort(np.random.default_rng(seed).choice(n_in, size=min(k, n_in),
                                                      replace=False))
  p = path_matrix(stack, rows)
  dead = []
  for a, b in zip(stack[:-1], stack[1:]):
    dead.append(int(((a.fan_in() == 0) | (b.fan_out() == 0)).sum()))
  return {
      "reachability": float((p > 0).mean()),
      "paths": _summary(p),
      "paths_per_input": _summary(per_input),
      "paths_per_output": _summary(per_output),
      "dead_units": dead,
      "sampled_inputs": int(p.shape[0]),
  }
