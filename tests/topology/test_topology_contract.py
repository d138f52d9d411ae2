"""Every registered generator keeps the same promises (one contract)."""

import numpy as np
import pytest

from snn_jax import topology as T

RANDOM = {"erdos_renyi", "fixed_fan_in", "biregular", "xnet", "small_world"}
# Relative density tolerance at the contract's sizes (structured families
# round to the nearest density their construction reaches).
TOLERANCE = {"ramanujan": 0.6, "erdos_renyi": 0.1}


def _make(name, n_in, n_out, **kw):
  if name == "dense":
    kw.pop("density", None)
  if name == "pruned":
    w = np.random.default_rng(kw.get("seed", 0) + 99).standard_normal((n_in, n_out))
    kw["weights"] = w
  return T.make(name, n_in, n_out, **kw)


ALL = T.names()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_in, n_out, bs", [(256, 256, 1), (128, 256, 1),
                                             (512, 256, 4)])
def test_contract(name, n_in, n_out, bs):
  t = _make(name, n_in, n_out, density=0.125, block_size=bs, seed=3)
  assert (t.n_in, t.n_out, t.block_size) == (n_in, n_out, bs)
  target = 1.0 if name == "dense" else 0.125
  assert abs(t.density - target) <= TOLERANCE.get(name, 0.05) * target, t
  # Indices: int32, sorted row-major, unique, in range.
  assert t.rows.dtype == np.int32 and t.cols.dtype == np.int32
  key = t.rows.astype(np.int64) * t.n_col_blocks + t.cols
  assert np.all(np.diff(key) > 0)
  assert t.rows.max() < t.n_row_blocks and t.cols.max() < t.n_col_blocks
  # Same seed -> same graph.
  assert _make(name, n_in, n_out, density=0.125, block_size=bs, seed=3) == t
  # Neuron-level mask and BlockCSR round trip agree.
  mask = t.mask()
  assert mask.shape == (n_in, n_out) and mask.sum() == t.nnz
  dense = np.asarray(t.to_bcsr().to_dense())
  np.testing.assert_array_equal(dense != 0, mask)
  np.testing.assert_array_equal(t.fan_in(), mask.sum(axis=0))
  np.testing.assert_array_equal(t.fan_out(), mask.sum(axis=1))


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_generators_depend_on_seed(name):
  a = _make(name, 256, 256, density=0.1, seed=0)
  b = _make(name, 256, 256, density=0.1, seed=1)
  assert a != b


@pytest.mark.parametrize("name", sorted(set(ALL) - RANDOM - {"pruned"}))
def test_deterministic_generators_ignore_seed(name):
  assert _make(name, 256, 256, density=0.125, seed=0) == _make(
      name, 256, 256, density=0.125, seed=7)


@pytest.mark.parametrize("name", [n for n in ALL if n != "dense"])
@pytest.mark.parametrize("density", [0.0, 1.5, -0.1])
def test_density_out_of_range(name, density):
  with pytest.raises(ValueError, match="density"):
    _make(name, 64, 64, density=density)


@pytest.mark.parametrize("name", ALL)
def test_width_not_divisible_by_block(name):
  with pytest.raises(ValueError, match="not divisible by block_size"):
    _make(name, 100, 64, density=0.25, block_size=8)


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter(name):
  with pytest.raises(ValueError, match="unknown parameter"):
    _make(name, 64, 64, density=0.25, no_such_param=1)


def test_unknown_name_lists_known():
  with pytest.raises(ValueError, match="known: .*erdos_renyi"):
    T.make("no_such_topology", 8, 8, density=0.5)


def test_make_stack_per_layer_and_determinism():
  s = T.make_stack("erdos_renyi", [64, 128, 32], density=[0.5, 0.25], seed=4)
  assert [t.shape if hasattr(t, "shape") else (t.n_in, t.n_out) for t in s] == [
      (64, 128), (128, 32)]
  assert abs(s[0].density - 0.5) < 0.05 and abs(s[1].density - 0.25) < 0.05
  assert s == T.make_stack("erdos_renyi", [64, 128, 32], density=[0.5, 0.25],
                           seed=4)
  assert s[0] != T.make_stack("erdos_renyi", [64, 128, 32], density=[0.5, 0.25],
                              seed=5)[0]
  with pytest.raises(ValueError, match="2 layers"):
    T.make_stack("erdos_renyi", [64, 128, 32], density=[0.5])
  with pytest.raises(ValueError, match="at least two"):
    T.make_stack("erdos_renyi", [64], density=0.5)


def test_save_load_round_trip(tmp_path):
  t = T.make("xnet", 96, 48, density=0.2, block_size=4, seed=2)
  t.save(tmp_path / "t.npz")
  u = T.Topology.load(tmp_path / "t.npz")
  assert u == t and u.name == "xnet" and u.params["density"] == 0.2
  assert hash(u) == hash(t)


def test_mask_refused_when_too_large():
  t = T.make("erdos_renyi", 65536, 65536, density=1e-5, seed=0)
  with pytest.raises(MemoryError, match="biadjacency"):
    t.mask()
  assert t.biadjacency().nnz == t.nnz
