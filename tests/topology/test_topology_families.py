"""Family-specific promises: degrees, formulas, proven path properties."""

import numpy as np
import pytest

from snn_jax import analysis as A
from snn_jax import topology as T


def test_erdos_renyi_epsilon_density():
  n_in, n_out, eps = 784, 1000, 20
  t = T.make("erdos_renyi", n_in, n_out, epsilon=eps, seed=0)
  p = eps * (n_in + n_out) / (n_in * n_out)
  assert T.set_epsilon_density(eps, n_in, n_out) == pytest.approx(p)
  sigma = np.sqrt(p * (1 - p) / (n_in * n_out))
  assert abs(t.density - p) < 5 * sigma
  with pytest.raises(ValueError, match="lower epsilon"):
    T.make("erdos_renyi", 10, 10, epsilon=100)
  with pytest.raises(ValueError, match="not both"):
    T.make("erdos_renyi", 10, 10, epsilon=1, density=0.1)
  capped = T.make("erdos_renyi", 10, 10, epsilon=100, cap_density=True)
  assert capped.density == 1.0


def test_fixed_fan_in_is_exact():
  t = T.make("fixed_fan_in", 300, 200, fan_in=17, seed=1)
  assert (t.fan_in() == 17).all()
  tb = T.make("fixed_fan_in", 320, 160, fan_in=32, block_size=16, seed=1)
  assert (tb.fan_in() == 32).all()
  with pytest.raises(ValueError, match="multiple of block_size"):
    T.make("fixed_fan_in", 320, 160, fan_in=30, block_size=16)


def test_biregular_exact_and_near():
  t = T.make("biregular", 200, 100, fan_in=20, seed=0)
  assert (t.fan_in() == 20).all() and (t.fan_out() == 10).all()
  t = T.make("biregular", 784, 1024, density=0.1, seed=0)
  fo = t.fan_out()
  assert (t.fan_in() == 78).all() and fo.max() - fo.min() <= 1
  with pytest.raises(ValueError, match="nearest"):
    T.make("biregular", 784, 1024, density=0.1, strict=True)
  dense_side = T.make("biregular", 40, 20, fan_in=30, seed=0)  # complement path
  assert (dense_side.fan_in() == 30).all() and (dense_side.fan_out() == 15).all()


def test_xnet_degree_on_smaller_side():
  t = T.make("xnet", 512, 64, degree=12, seed=0)
  assert (t.fan_in() == 12).all()
  t = T.make("xnet", 64, 512, degree=12, seed=0)
  assert (t.fan_out() == 12).all()


def test_circulant_and_cayley_are_biregular_when_sizes_divide():
  for name in ("circulant", "cayley"):
    t = T.make(name, 256, 1024, density=0.0625, seed=0)
    assert len(set(t.fan_in())) == 1 and len(set(t.fan_out())) == 1
    assert t.density == pytest.approx(16 / 256)
  # Cayley (spread shifts) expands much better than the banded circulant.
  assert A.spectral_gap(T.make("cayley", 512, 512, density=1 / 32)) > \
      3 * A.spectral_gap(T.make("circulant", 512, 512, density=1 / 32))


@pytest.mark.parametrize("q", [2, 3, 5, 7])
def test_projective_plane_is_ramanujan(q):
  n = q * q + q + 1
  t = T.make("ramanujan", n, n, q=q, strict=True)
  assert (t.fan_in() == q + 1).all() and (t.fan_out() == q + 1).all()
  s = np.linalg.svd(t.mask().astype(float), compute_uv=False)
  np.testing.assert_allclose(s[0], q + 1, rtol=1e-9)
  np.testing.assert_allclose(s[1:], np.sqrt(q), rtol=1e-9)
  assert A.spectral_gap(t, normalized=False) == pytest.approx(q + 1 - np.sqrt(q))
  assert A.spectral_gap(t) == pytest.approx(1 - np.sqrt(q) / (q + 1))


def test_ramanujan_errors():
  with pytest.raises(ValueError, match="out of reach"):
    T.make("ramanujan", 1024, 10, density=0.1)
  with pytest.raises(ValueError, match="prime"):
    T.make("ramanujan", 21, 21, q=4)
  with pytest.raises(ValueError, match="dividing"):
    T.make("ramanujan", 20, 20, q=2, strict=True)


@pytest.mark.parametrize("radices, dense_widths, bs", [
    ([[2, 2, 2]], [1, 1, 1, 1], 1),
    ([[2, 4], [4, 2]], [3, 2, 1, 2, 3], 1),
    ([[3, 3]], [2, 1, 4], 4),
])
def test_radixnet_proven_properties(radices, dense_widths, bs):
  n_prime = int(np.prod(radices[0]))
  widths = [n_prime * d * bs for d in dense_widths]
  s = T.make_stack("radixnet", widths, radices=radices, block_size=bs)
  digits = [r for system in radices for r in system]
  for t, r in zip(s, digits):
    assert t.density == pytest.approx(r / n_prime)  # exact density formula
    assert len(set(t.fan_in())) == 1 and len(set(t.fan_out())) == 1
  # Across each full system: every input reaches every output, with equal path
  # counts (prod of the inner neuron widths per node times the block size
  # factors, all equal).
  start = 0
  for system in radices:
    sub = s[start:start + len(system)]
    ps = A.path_stats(sub)
    assert ps["reachability"] == 1.0
    assert ps["paths"]["cv"] == pytest.approx(0.0, abs=1e-12)
    inner = np.prod([w // n_prime for w in widths[start + 1:start + len(system)]])
    assert ps["paths"]["min"] == inner
    start += len(system)


@pytest.mark.parametrize("radices", [[[4, 4], [2]], [[3, 4], [2, 6], [2]],
                                     [[2, 3], [6]]])
def test_radixnet_last_system_may_divide_n_prime(radices):
  # The authors' generator accepts a last system whose product divides N'.
  n_prime = int(np.prod(radices[0]))
  digits = [r for system in radices for r in system]
  s = T.make_stack("radixnet", [n_prime] * (len(digits) + 1), radices=radices)
  for t, r in zip(s, digits):
    assert t.density == pytest.approx(r / n_prime)
    assert (t.fan_in() == r).all() and (t.fan_out() == r).all()
  assert A.path_stats(s[:len(radices[0])])["reachability"] == 1.0
  last = s[-len(radices[-1]):]  # reaches prod(last) outputs from each input
  assert A.path_stats(last)["reachability"] == pytest.approx(
      np.prod(radices[-1]) / n_prime)


@pytest.mark.parametrize("widths, density", [([1000] * 4, 0.01),
                                             ([243] * 6, 3 / 243),
                                             ([256] * 5, 4 / 256)])
def test_radixnet_from_density_reaches_everything_at_exact_powers(widths, density):
  # 1000 = 10^3 and 243 = 3^5: float logs put the digit count one short.
  s = T.make_stack("radixnet", widths, density=density)
  assert A.path_stats(s)["reachability"] == 1.0
  radix = round(density * widths[0])
  assert all((t.fan_in() == radix).all() for t in s)
  assert A.path_stats(s[:-1])["reachability"] == pytest.approx(1 / radix)


@pytest.mark.parametrize("dense_widths, hidden", [([8, 3, 1], 300),
                                                  ([8, 30, 1], 3000)])
def test_radixnet_truncated_to_784_inputs_as_alford(dense_widths, hidden):
  s = T.make_stack("radixnet", [784, hidden, 100], radices=[[10, 10]],
                   truncate_inputs=True)
  first = s[0]
  assert (first.n_in, first.n_out) == (784, hidden)
  per_row = 10 * dense_widths[1]  # radix x the next layer's dense width
  assert first.nnz == 800 * per_row - 16 * per_row  # 16 rows' edges dropped
  assert (first.fan_out() == per_row).all()  # kept rows are untouched
  full_fan_in = 10 * dense_widths[0]
  fan_in = first.fan_in()
  assert first.params["dropped_input_rows"] == 16
  assert (first.params["fan_in_min"], first.params["fan_in_max"]) == (
      int(fan_in.min()), int(fan_in.max())) == (full_fan_in - 16, full_fan_in)
  assert s[1].density == pytest.approx(0.1)
  assert A.path_stats(s)["reachability"] == 1.0  # every kept input, everywhere


def test_radixnet_errors():
  with pytest.raises(ValueError, match="same product"):
    T.make_stack("radixnet", [8, 8, 8, 8], radices=[[2, 2], [3]])
  with pytest.raises(ValueError, match="but the last must have the same"):
    T.make_stack("radixnet", [4] * 6, radices=[[2, 2], [2], [2, 2]])
  with pytest.raises(ValueError, match="truncate_inputs=True"):
    T.make_stack("radixnet", [784, 300, 100], radices=[[10, 10]])
  with pytest.raises(ValueError, match="truncate_inputs needs radices"):
    T.make_stack("radixnet", [784, 300], density=0.1, truncate_inputs=True)
  with pytest.raises(ValueError, match="define 3 layers"):
    T.make_stack("radixnet", [8, 8, 8], radices=[[2, 2, 2]])
  with pytest.raises(ValueError, match="multiple of N'"):
    T.make_stack("radixnet", [8, 12, 8, 8], radices=[[2, 2, 2]])
  with pytest.raises(ValueError, match="must divide"):
    T.make("radixnet", 12, 8, n_prime=8, radix=2)
  with pytest.raises(ValueError, match="make_stack"):
    T.make("radixnet", 8, 8, radices=[[2, 2, 2]])


def test_butterfly_stack_single_paths():
  s = T.make_stack("butterfly", [64] * 4, radix=4)
  ps = A.path_stats(s)
  assert ps["reachability"] == 1.0 and ps["paths"]["max"] == 1.0
  assert all(t.density == pytest.approx(4 / 64) for t in s)
  with pytest.raises(ValueError, match="must divide"):
    T.make("butterfly", 64, 64, radix=3)


def test_clos_and_block_diag_shuffle_connect_everything():
  s = T.make_stack("clos", [64] * 4, groups=8)
  ps = A.path_stats(s)
  assert ps["reachability"] == 1.0 and ps["paths"]["cv"] == pytest.approx(0.0)
  assert all(t.density == pytest.approx(1 / 8) for t in s)
  s = T.make_stack("block_diag_shuffle", [64] * 3, groups=8)
  assert A.path_stats(s)["reachability"] == 1.0
  unshuffled = T.make_stack("block_diag_shuffle", [64] * 3, groups=8, shuffle=False)
  assert A.path_stats(unshuffled)["reachability"] == pytest.approx(1 / 8)


def test_small_world_keeps_fan_out_and_rewires():
  lattice = T.make("small_world", 256, 256, density=0.05, beta=0.0)
  rewired = T.make("small_world", 256, 256, density=0.05, beta=0.3, seed=1)
  np.testing.assert_array_equal(lattice.fan_out(), rewired.fan_out())
  assert lattice.nnz == rewired.nnz
  shared = (lattice.mask() & rewired.mask()).sum() / lattice.nnz
  assert 0.6 < shared < 0.8  # ~70% of the edges kept at beta = 0.3
  assert A.spectral_gap(rewired) > 2 * A.spectral_gap(lattice)


def test_pruned_keeps_largest_magnitudes(rng):
  w = rng.standard_normal((64, 32))
  t = T.make("pruned", 64, 32, density=0.1, weights=w)
  k = round(0.1 * w.size)
  assert t.nnz == k
  thresh = np.sort(np.abs(w).ravel())[-k]
  np.testing.assert_array_equal(t.mask(), np.abs(w) >= thresh)
  tb = T.make("pruned", 64, 32, density=0.25, weights=w, block_size=8)
  norms = np.sqrt((w**2).reshape(8, 8, 4, 8).sum(axis=(1, 3)))
  np.testing.assert_array_equal(tb.block_mask(), norms >= np.sort(norms.ravel())[-8])


@pytest.mark.parametrize("scale", [1.5, 3.0])
def test_pruned_global_scope(rng, scale):
  ws = [rng.standard_normal((32, 32)) * scale, rng.standard_normal((32, 16))]
  s = T.make_stack("pruned", [32, 32, 16], density=0.2, weights=ws, scope="global")
  k = round(0.2 * (32 * 32 + 32 * 16))
  allw = np.concatenate([np.abs(w).ravel() for w in ws])
  thresh = np.sort(allw)[-k]  # one threshold over every layer's weights
  assert s[0].density > s[1].density  # the larger-scaled layer keeps more
  for t, w in zip(s, ws):
    expected = np.abs(w) >= thresh
    if not expected.any():  # a layer below the threshold keeps its best weight
      expected.flat[np.argmax(np.abs(w))] = True
    np.testing.assert_array_equal(t.mask(), expected)
  with pytest.raises(ValueError, match="weight matrices"):
    T.make_stack("pruned", [32, 32, 16], density=0.2, weights=ws[:1])
