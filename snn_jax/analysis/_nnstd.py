"""NNSTD: Neural Network Sparse Topology Distance.

Liu, Mocanu, Matavalam, Pei & Pechenizkiy, "Topological Insights into Sparse
Neural Networks", ECML-PKDD 2020, arXiv:2006.14085.

Two sparse networks of the same widths are compared layer by layer, from the
input. A neuron is described by the set of units that feed it. The distance
between neuron a of network A and neuron b of network B is the normalised
edit distance of their input sets,

    NED(a, b) = |S_a symmetric-difference T_b| / |S_a union T_b|
              = 1 - |S_a intersect T_b| / |S_a union T_b|   (0 if both empty),

where B's input units are first relabelled by the matching found for the
previous layer (the inputs themselves are shared, so the first layer needs
no relabelling). Hidden neurons are interchangeable, so each hidden layer is
matched one-to-one with the Hungarian algorithm (``scipy.optimize.
linear_sum_assignment``) minimising the summed NED; output neurons are
labelled by class and are compared as they stand. A layer's distance is the
mean NED of its matched pairs and NNSTD is the mean over layers, in [0, 1]:
0 for networks equal up to a permutation of hidden neurons, 1 when no
matched pair shares a single input.

Neurons with identical input sets (for example, several hidden units with no
inputs at all) are ambiguous for the matching; the permutation invariance is
exact when hidden neurons' input sets are distinct.

Two conventions (``convention=``):

* ``"ours"`` (default): as above -- the output layer is compared by class
  label, NED computed as ``1 - |S_a n T_b| / |S_a u T_b|``.
* ``"authors"``: exactly as the authors' code computes it (their repository
  Shiweiliuiiiiiii/Sparse_Topology_Distance, summarised in
  ``../shared/papers/README.md``): the distance in the form
  ``(|S_a| + |S_b| - 2 |S_a n S_b|) / |S_a u S_b|`` (equal in exact
  arithmetic, but its float rounding decides ties in the matching), and
  *every* layer matched, the output layer included, so output neurons are
  treated as interchangeable too. The authors report per-layer distances;
  ``return_layers=True`` gives them (the scalar is their mean).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from snn_jax.analysis._spectral import _as_stack
from snn_jax.topology import Topology

# The Hungarian step costs O(width^3) time and a dense width^2 cost matrix.
MAX_MATCHED_WIDTH = 16384


CONVENTIONS = ("ours", "authors")


def _ned_matrix(a: sp.csr_matrix, b: sp.csr_matrix,
                convention: str = "ours") -> np.ndarray:
  """float64[n_out, n_out]: NED between columns of a and columns of b, in
  the float form of ``convention`` (module docstring)."""
  inter = (a.T @ b).toarray().astype(np.float64)
  size_a = np.asarray(a.sum(axis=0), np.float64).ravel()[:, None]
  size_b = np.asarray(b.sum(axis=0), np.float64).ravel()[None, :]
  union = size_a + size_b - inter
  with np.errstate(invalid="ignore", divide="ignore"):
    if convention == "authors":
      ned = np.where(union > 0, (size_a + size_b - 2 * inter) / union, 0.0)
    else:
      ned = np.where(union > 0, 1.0 - inter / union, 0.0)
  return ned


def nnstd(stack_a: Topology | Sequence[Topology],
          stack_b: Topology | Sequence[Topology], *,
          return_layers: bool = False, convention: str = "ours"):
  """NNSTD between two stacks of the same widths (module docstring).

  Args:
    stack_a, stack_b: a Topology or list of Topology each, same widths.
    return_layers: also return the per-layer distances.
    convention: ``"ours"`` or ``"authors"`` (module docstring).

  Returns:
    float in [0, 1] (the mean over layers), or ``(float, list[float])``
    with ``return_layers``.
  """
  if convention not in CONVENTIONS:
    raise ValueError(f"convention must be one of {CONVENTIONS}, got "
                     f"{convention!r}")
  sa, sb = _as_stack(stack_a), _as_stack(stack_b)
  wa = [sa[0].n_in] + [t.n_out for t in sa]
  wb = [sb[0].n_in] + [t.n_out for t in sb]
  if wa != wb:
    raise ValueError(f"nnstd needs equal widths, got {wa} and {wb}")
  perm = np.arange(wa[0])  # B-unit matched to each A-unit of the layer below.
  layer_d = []
  for l, (ta, tb) in enumerate(zip(sa, sb)):
    a = ta.biadjacency()
    b = tb.biadjacency()[perm]  # B's inputs in A's labels.
    cost = _ned_matrix(a, b, convention)
    if l == len(sa) - 1 and convention == "ours":
      matched = np.arange(cost.shape[0])
    else:
      if cost.shape[0] > MAX_MATCHED_WIDTH:
        raise ValueError(
            f"nnstd: matched width {cost.shape[0]} is above {MAX_MATCHED_WIDTH}"
            "; the Hungarian matching is cubic in the width"
        )
      _, matched = scipy.optimize.linear_sum_assignment(cost)
    layer_d.append(float(cost[np.arange(cost.shape[0]), matched].mean()))
    perm = matched
  total = float(np.mean(layer_d))
  return (total, layer_d) if return_layers else total
