"""Spectral expansion metrics of one layer or of a whole layered network.

Which matrix, and why
---------------------
A layer is a bipartite graph with biadjacency ``B`` (n_in x n_out, 0/1) and
adjacency ``A = [[0, B], [B^T, 0]]``; A's eigenvalues are ``+-sigma_i`` for
the singular values ``sigma_1 >= sigma_2 >= ...`` of B, so the bipartite
spectrum is read off B's singular values with a sparse SVD (``svds``).

* ``spectral_gap(t)`` (default ``normalized=True``): ``1 - sigma_2(B_hat)``
  for the degree-normalised biadjacency ``B_hat = D_in^{-1/2} B D_out^{-1/2}``
  (whose top singular value is 1). This is the expansion measure of a
  bipartite graph for random walks -- the quantity the expander mixing lemma
  bounds -- and it is comparable across densities and degree sequences, which
  Bourely et al. (arXiv:1706.05683) need when they correlate accuracy with
  expansion over many topologies. For a d-regular bipartite graph it equals
  ``(d - lambda_2(A)) / d``. ``normalized=False`` gives the raw gap
  ``sigma_1(B) - sigma_2(B)`` (= ``d - lambda_2`` for d-regular graphs, the
  quantity bounded by the Ramanujan property ``lambda_2 <= 2 sqrt(d - 1)``
  for bi-regular graphs, Hoory, Linial & Wigderson, Bull. AMS 43, 2006).
* ``algebraic_connectivity(t)``: the Fiedler value ``lambda_2(L)`` of the
  combinatorial Laplacian ``L = D - A`` of the graph on all
  ``n_in + n_out`` units (Fiedler, Czech. Math. J. 23, 1973). It is zero iff
  the graph is disconnected and bounds edge expansion from below (Cheeger).
  Bourely et al. correlate accuracy with it.

Both accept a single :class:`Topology` or a list (a whole MLP): a stack is
analysed as one layered graph on ``sum(widths)`` units (its adjacency is
still bipartite: even against odd layers), so ``spectral_gap`` then uses the
normalised biadjacency between the even and the odd layers' units, i.e.
``1 - lambda_2(D^{-1/2} A D^{-1/2})`` of the whole layered graph.

Sizes up to 65,536-unit layers work: only sparse matrix-vector products are
used (ARPACK through scipy), never a dense matrix above 2,000 units.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from snn_jax.topology import Topology

_DENSE_LIMIT = 2000


def _as_stack(t: Topology | Sequence[Topology]) -> list[Topology]:
  stack = [t] if isinstance(t, Topology) else list(t)
  if not stack or not all(isinstance(x, Topology) for x in stack):
    raise TypeError("expected a Topology or a non-empty list of Topology")
  for a, b in zip(stack[:-1], stack[1:]):
    if a.n_out != b.n_in:
      raise ValueError(
          f"stack widths do not chain: a layer with n_out={a.n_out} is "
          f"followed by one with n_in={b.n_in}"
      )
  return stack


def layered_adjacency(stack: Sequence[Topology]) -> sp.csr_matrix:
  """Symmetric 0/1 adjacency of a stack on ``sum(widths)`` units."""
  stack = _as_stack(stack)
  widths = [stack[0].n_in] + [t.n_out for t in stack]
  offsets = np.concatenate([[0], np.cumsum(widths)])
  n = int(offsets[-1])
  rows, cols = [], []
  for l, t in enumerate(stack):
    b = t.biadjacency().tocoo()
    rows.append(b.row + offsets[l])
    cols.append(b.col + offsets[l + 1])
  r = np.concatenate(rows)
  c = np.concatenate(cols)
  data = np.ones(2 * r.size)
  return sp.csr_matrix((data, (np.concatenate([r, c]), np.concatenate([c, r]))),
                       shape=(n, n))


def _inv_sqrt(deg: np.ndarray) -> np.ndarray:
  out = np.zeros_like(deg, dtype=np.float64)
  nz = deg > 0
  out[nz] = 1.0 / np.sqrt(deg[nz])
  return out


def _top_two_singular(m: sp.spmatrix) -> tuple[float, float]:
  """The two largest singular values of a sparse matrix."""
  if min(m.shape) < 2:
    s = np.linalg.svd(m.toarray(), compute_uv=False)
    return float(s[0]), 0.0
  if max(m.shape) <= _DENSE_LIMIT:
    s = scipy.linalg.svdvals(m.toarray())
    return float(s[0]), float(s[1])
  s = spla.svds(m.astype(np.float64), k=2, which="LM", return_singular_vectors=False,
                tol=1e-8, random_state=0)
  s = np.sort(s)[::-1]
  return float(s[0]), float(s[1])


def _bipartite_gap(b: sp.spmatrix, normalized: bool) -> float:
  if normalized:
    d_in = np.asarray(b.sum(axis=1)).ravel()
    d_out = np.asarray(b.sum(axis=0)).ravel()
    b = sp.diags(_inv_sqrt(d_in)) @ b @ sp.diags(_inv_sqrt(d_out))
  s1, s2 = _top_two_singular(b)
  gap = (s1 - s2) if not normalized else (1.0 - s2 / s1 if s1 > 0 else 0.0)
  # Round away eigensolver noise: a disconnected graph has gap exactly 0.
  return 0.0 if gap < 1e-9 * max(s1, 1.0) else float(gap)


def spectral_gap(t: Topology | Sequence[Topology], *, normalized: bool = True) -> float:
  """Spectral gap of a layer's bipartite graph or of a stack (module doc).

  Args:
    t: a Topology (one layer) or a list of them (a layered network).
    normalized: ``1 - sigma_2`` of the degree-normalised (bi)adjacency
      (default) or the raw ``sigma_1 - sigma_2`` of the 0/1 matrix.

  Returns:
    float; for a complete bipartite layer 1 (normalised) or
    ``sqrt(n_in n_out)`` (raw).
  """
  stack = _as_stack(t)
  if len(stack) == 1:
    return _bipartite_gap(stack[0].biadjacency(), normalized)
  # The layered graph is bipartite (even against odd layers), so its
  # spectrum is that of the even-by-odd biadjacency, as for one layer.
  widths = [stack[0].n_in] + [t.n_out for t in stack]
  layer_of = np.repeat(np.arange(len(widths)), widths)
  a = layered_adjacency(stack)
  even, odd = np.flatnonzero(layer_of % 2 == 0), np.flatnonzero(layer_of % 2)
  return _bipartite_gap(a[even][:, odd], normalized)


def _laplacian(stack: list[Topology]) -> sp.csr_matrix:
  a = layered_adjacency(stack)
  deg = np.asarray(a.sum(axis=1)).ravel()
  return (sp.diags(deg) - a).tocsr()


def algebraic_connectivity(t: Topology | Sequence[Topology]) -> float:
  """Fiedler value ``lambda_2(L)`` of ``L = D - A`` (module docstring).

  Zero for a disconnected graph (including isolated units); equal to
  ``min(n_in, n_out)`` for a complete bipartite layer with both sides >= 2.
  Large graphs: ARPACK on ``c I - L`` restricted to the complement of the
  constant vector (``c`` = twice the largest degree), whose top eigenvalue is
  ``c - lambda_2``.
  """
  stack = _as_stack(t)
  lap = _laplacian(stack)
  n = lap.shape[0]
  if n <= _DENSE_LIMIT:
    ev = scipy.linalg.eigvalsh(lap.toarray())
    return 0.0 if ev[1] < 1e-9 * max(ev[-1], 1.0) else float(ev[1])
  deg = lap.diagonal()
  if (deg == 0).any():
    return 0.0  # An isolated unit disconnects the graph.
  c = 2.0 * float(deg.max())

  def matvec(x):
    x = x - x.mean()
    y = c * x - lap @ x
    return y - y.mean()

  op = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
  top = spla.eigsh(op, k=1, which="LA", tol=1e-9, return_eigenvectors=False,
                   v0=np.random.default_rng(0).standard_normal(n), maxiter=20 * n)
  return float(max(c - top[0], 0.0))
