"""Pruning-derived topologies (Alford et al. 2019): the pruned topology
stack of a network's dense weights by magnitude (:func:`prune_stack`).
The train-dense, prune, retrain pipeline that uses it is a study:
:func:`snn_jax.studies.prune_and_retrain`."""

from __future__ import annotations

import numpy as np

def prune_stack(weights: dict[str, np.ndarray], density: float, *,
                scope: str = "layer", block_size: int | list[int] = 1):
  """The pruned topology stack of a network's dense weights
  (``SparseMLP.dense_weights()`` format: ``layer_<l>_weight``)."""
  from snn_jax import topology
  mats = []
  while f"layer_{len(mats)}_weight" in weights:
    mats.append(np.asarray(weights[f"layer_{len(mats)}_weight"]))
  if not mats:
    raise ValueError("weights hold no layer_0_weight")
  widths = [mats[0].shape[0]] + [m.shape[1] for m in mats]
  return topology.make_stack("pruned", widths, density=density,
                             block_size=block_size, weights=mats, scope=scope)
