"""Metrics against closed forms; sparse and dense solvers agree; NNSTD."""

import numpy as np
import pytest
import scipy.linalg

from snn_jax import analysis as A
from snn_jax import topology as T


@pytest.mark.parametrize("m, n", [(5, 7), (12, 12), (30, 4)])
def test_complete_bipartite_closed_forms(m, n):
  t = T.make("dense", m, n)
  assert A.spectral_gap(t) == pytest.approx(1.0)
  assert A.spectral_gap(t, normalized=False) == pytest.approx(np.sqrt(m * n))
  # Laplacian of K_{m,n}: 0, m (x n-1), n (x m-1), m+n.
  assert A.algebraic_connectivity(t) == pytest.approx(min(m, n))


def test_disconnected_graph_has_zero_connectivity():
  t = T.make("block_diag_shuffle", 64, 64, groups=4, shuffle=False)
  assert A.algebraic_connectivity(t) == 0.0
  assert A.spectral_gap(t) == 0.0
  stack = T.make_stack("block_diag_shuffle", [64, 64, 64], groups=4, shuffle=False)
  assert A.algebraic_connectivity(stack) == 0.0


def test_regular_graph_laplacian_closed_form():
  # d-regular bipartite: lambda_2(L) = d - sigma_2(B).
  q = 5
  n = q * q + q + 1
  t = T.make("ramanujan", n, n, q=q, strict=True)
  assert A.algebraic_connectivity(t) == pytest.approx(q + 1 - np.sqrt(q))


@pytest.mark.slow
def test_sparse_solvers_match_dense():
  # 1,500 + 1,500 units: above the dense limit, so ARPACK paths run.
  t = T.make("erdos_renyi", 1500, 1500, density=0.01, seed=0)
  b = t.mask().astype(float)
  s = scipy.linalg.svdvals(b)
  assert A.spectral_gap(t, normalized=False) == pytest.approx(s[0] - s[1], rel=1e-6)
  lap = np.block([[np.diag(b.sum(1)), -b], [-b.T, np.diag(b.sum(0))]])
  ev = scipy.linalg.eigvalsh(lap)
  assert A.algebraic_connectivity(t) == pytest.approx(ev[1], rel=1e-5)


def test_stack_metrics_and_chain_check():
  s = T.make_stack("erdos_renyi", [32, 64, 16], density=0.3, seed=1)
  adj = A.layered_adjacency(s).toarray()
  assert adj.shape == (112, 112) and (adj == adj.T).all()
  lap = np.diag(adj.sum(1)) - adj
  assert A.algebraic_connectivity(s) == pytest.approx(
      scipy.linalg.eigvalsh(lap)[1], abs=1e-9)
  norm = adj / np.sqrt(np.outer(adj.sum(1), adj.sum(1)))
  ev = np.sort(scipy.linalg.eigvalsh(norm))
  assert A.spectral_gap(s) == pytest.approx(1 - ev[-2], abs=1e-9)
  with pytest.raises(ValueError, match="do not chain"):
    A.spectral_gap([s[0], s[0]])


def test_path_stats_counts_and_dead_units():
  s = T.make_stack("erdos_renyi", [20, 30, 10], density=0.3, seed=2)
  p = s[0].mask().astype(float) @ s[1].mask().astype(float)
  ps = A.path_stats(s)
  assert ps["reachability"] == pytest.approx((p > 0).mean())
  assert ps["paths"]["max"] == p.max() and ps["paths"]["mean"] == pytest.approx(p.mean())
  np.testing.assert_allclose(ps["paths_per_input"]["mean"], p.sum(1).mean())
  dead = ((s[0].fan_in() == 0) | (s[1].fan_out() == 0)).sum()
  assert ps["dead_units"] == [dead]


def _permute_hidden(stack, perms):
  """Relabels hidden neurons: perms[l] permutes layer l+1's units."""
  out = []
  for l, t in enumerate(stack):
    m = t.mask()
    if l > 0:
      m = m[np.argsort(perms[l - 1])]
    if l < len(stack) - 1:
      m = m[:, np.argsort(perms[l])]
    out.append(T.Topology.from_mask(m))
  return out


def test_nnstd_permutation_invariance(rng):
  s = T.make_stack("erdos_renyi", [40, 60, 50, 10], density=0.2, seed=3)
  perms = [rng.permutation(60), rng.permutation(50)]
  p = _permute_hidden(s, perms)
  assert p[0] != s[0]
  d, layers = A.nnstd(s, p, return_layers=True)
  assert d == pytest.approx(0.0, abs=1e-12) and len(layers) == 3


def test_nnstd_disjoint_is_one():
  a = np.zeros((20, 8), bool)
  b = np.zeros((20, 8), bool)
  a[:10, :] = True
  b[10:, :] = True
  ta, tb = T.Topology.from_mask(a), T.Topology.from_mask(b)
  assert A.nnstd([ta], [tb]) == 1.0
  c = T.Topology.from_mask(np.ones((8, 4), bool))
  assert A.nnstd([ta, c], [tb, c]) == pytest.approx(0.5)


def test_nnstd_grows_with_rewiring():
  base = T.make_stack("erdos_renyi", [50, 80, 10], density=0.2, seed=0)
  rng = np.random.default_rng(0)
  dists = []
  for frac in (0.1, 0.3, 0.6):
    m = base[0].mask().copy()
    on = np.argwhere(m)
    off = np.argwhere(~m)
    k = int(frac * len(on))
    m[tuple(on[rng.choice(len(on), k, replace=False)].T)] = False
    m[tuple(off[rng.choice(len(off), k, replace=False)].T)] = True
    dists.append(A.nnstd(base, [T.Topology.from_mask(m), base[1]]))
  assert dists[0] < dists[1] < dists[2]
  with pytest.raises(ValueError, match="equal widths"):
    A.nnstd(base, base[:1])


def test_nnstd_authors_convention_matches_the_output_layer():
  # Identical first layers (distinct input sets); the output neurons of B
  # are A's with their labels swapped.
  first = T.Topology.from_mask(np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1],
                                         [0, 0, 1]], bool))
  out_a = T.Topology.from_mask(np.array([[1, 0], [0, 1], [0, 1]], bool))
  out_b = T.Topology.from_mask(np.array([[0, 1], [1, 0], [1, 0]], bool))
  d, layers = A.nnstd([first, out_a], [first, out_b], return_layers=True)
  assert layers == [0.0, 1.0] and d == 0.5  # ours: outputs by class label
  d, layers = A.nnstd([first, out_a], [first, out_b], return_layers=True,
                      convention="authors")
  assert layers == [0.0, 0.0] and d == 0.0  # the authors match them too
  with pytest.raises(ValueError, match="convention"):
    A.nnstd([first], [first], convention="paper")


def test_nnstd_authors_float_form():
  """|S_a| = 1, |S_b| = 3, one shared input: the two forms of the same
  distance 2/3 round differently, which can break ties differently."""
  import scipy.sparse as sp
  from snn_jax.analysis._nnstd import _ned_matrix
  a = sp.csr_matrix(np.array([[1], [0], [0]], np.float64))
  b = sp.csr_matrix(np.array([[1], [1], [1]], np.float64))
  authors = _ned_matrix(a, b, "authors")[0, 0]
  ours = _ned_matrix(a, b, "ours")[0, 0]
  assert authors == (1 + 3 - 2 * 1) / 3 and ours == 1 - 1 / 3
  assert authors != ours and authors == pytest.approx(ours)


def test_metrics_table_rows():
  s = T.make_stack("xnet", [32, 64, 8], density=0.25)
  rows = A.metrics_table(s)
  assert [r["scope"] for r in rows] == ["layer", "layer", "network"]
  assert rows[0]["density"] == s[0].density
  assert 0 < rows[0]["spectral_gap"] <= 1
  assert rows[-1]["nnz"] == s[0].nnz + s[1].nnz
