"""BlockCSR: construction, round trips, transpose metadata, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax.sparse import BlockCSR, block_metadata


def _random_block_dense(rng, n_rb, n_cb, bs, density):
  mask = rng.random((n_rb, n_cb)) < density
  dense = rng.standard_normal((n_rb * bs, n_cb * bs)).astype(np.float32)
  dense *= np.kron(mask, np.ones((bs, bs), dtype=bool))
  return dense, mask


@pytest.mark.parametrize("bs", [1, 2, 8, 16])
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_from_dense_round_trip(rng, bs, density):
  dense, mask = _random_block_dense(rng, 7, 5, bs, density)
  w = BlockCSR.from_dense(dense, bs)
  np.testing.assert_array_equal(np.asarray(w.to_dense()), dense)
  np.testing.assert_array_equal(w.block_mask(), mask & (dense.reshape(
      7, bs, 5, bs).any(axis=(1, 3))))
  assert w.shape == (7 * bs, 5 * bs) and w.block_size == bs


def test_from_mask_values_and_orientation(rng):
  # W is (n_in, n_out): block (0, 1) lives in rows 0:2 and columns 2:4.
  mask = np.array([[False, True], [True, True]])
  vals = rng.standard_normal((3, 2, 2)).astype(np.float32)
  w = BlockCSR.from_mask(mask, 2, values=vals)
  d = np.asarray(w.to_dense())
  np.testing.assert_array_equal(d[0:2, 2:4], vals[0])
  np.testing.assert_array_equal(d[2:4, 0:2], vals[1])
  np.testing.assert_array_equal(d[2:4, 2:4], vals[2])
  np.testing.assert_array_equal(d[0:2, 0:2], 0)
  x = rng.standard_normal((3, 4)).astype(np.float32)
  np.testing.assert_allclose(x @ d, x @ np.asarray(w.to_dense()))


def test_transpose_metadata_lists_blocks_by_column(rng):
  mask = rng.random((9, 6)) < 0.4
  mask[:, 2] = False  # An empty block column.
  mask[4, :] = False  # An empty block row.
  w = BlockCSR.from_mask(mask, 1)
  rows, cols = np.nonzero(mask)
  col_order = np.asarray(w.col_order)
  col_ptr = np.asarray(w.col_ptr)
  for j in range(6):
    pos = col_order[col_ptr[j]:col_ptr[j + 1]]
    np.testing.assert_array_equal(np.asarray(w.col_idx)[pos], j)
    np.testing.assert_array_equal(np.asarray(w.row_idx)[pos],
                                  np.sort(rows[cols == j]))
  row_ptr = np.asarray(w.row_ptr)
  assert row_ptr[4] == row_ptr[5]
  assert col_ptr[2] == col_ptr[3]
  for f in ("col_idx", "row_ptr", "row_idx", "col_order", "col_ptr"):
    assert getattr(w, f).dtype == np.int32


def test_from_coo_sorts_and_keeps_value_pairing(rng):
  rows = np.array([2, 0, 1, 0])
  cols = np.array([0, 1, 1, 0])
  vals = rng.standard_normal((4, 3, 3)).astype(np.float32)
  w = BlockCSR.from_coo(rows, cols, shape=(9, 6), block_size=3, values=vals)
  d = np.asarray(w.to_dense())
  for k in range(4):
    r, c = rows[k], cols[k]
    np.testing.assert_array_equal(d[3 * r:3 * r + 3, 3 * c:3 * c + 3], vals[k])


def test_pytree_jit_and_static_nnzb(rng):
  w = BlockCSR.from_dense(rng.standard_normal((8, 8)).astype(np.float32), 4)
  leaves, treedef = jax.tree_util.tree_flatten(w)
  assert len(leaves) == 6
  traces = []

  @jax.jit
  def f(w):
    traces.append(1)
    return w.to_dense().sum()

  f(w)
  f(w.replace(values=w.values * 2))
  assert len(traces) == 1
  np.testing.assert_allclose(float(f(w)), np.asarray(w.to_dense()).sum(),
                             rtol=1e-5)


def test_immutable():
  w = BlockCSR.from_mask(np.eye(2, dtype=bool), 1)
  with pytest.raises(Exception, match="immutable"):
    w.values = None


@pytest.mark.parametrize("bad, match", [
    (dict(shape=(9, 8)), "n_in=9 is not divisible by block_size=2"),
    (dict(col_idx=np.array([0, 5], np.int32)), "col_idx out of range"),
    (dict(row_idx=np.array([0, 0], np.int32), col_idx=np.array([1, 1], np.int32)),
     "duplicate block"),
    (dict(row_idx=np.array([1, 0], np.int32), col_idx=np.array([0, 1], np.int32)),
     "not sorted"),
    (dict(col_idx=np.array([0, 1], np.int64)), "int32"),
    (dict(values=np.ones((2, 4), np.float32)), "shape"),
    (dict(values=np.ones((2, 2, 2), np.int32)), "floating point"),
    (dict(col_ptr=np.array([0, 2, 2, 2, 2], np.int32)), "inconsistent"),
    (dict(block_size=0), "positive"),
])
def test_validation_errors(bad, match):
  args = dict(values=np.ones((2, 2, 2), np.float32),
              **block_metadata(np.array([0, 1]), np.array([0, 1]), 4, 4),
              shape=(8, 8), block_size=2)
  args.update(bad)
  with pytest.raises((ValueError, TypeError), match=match):
    BlockCSR(**args)


def test_from_dense_errors():
  with pytest.raises(ValueError, match="not divisible"):
    BlockCSR.from_dense(np.ones((6, 8), np.float32), 4)
  with pytest.raises(ValueError, match="2-D"):
    BlockCSR.from_dense(np.ones((2, 6, 8), np.float32), 2)
  with pytest.raises(TypeError, match="floating"):
    BlockCSR.from_dense(np.ones((4, 4), np.int32), 2)
  with pytest.raises(TypeError, match="bool"):
    BlockCSR.from_mask(np.ones((2, 2), np.int32), 2)


def test_empty_matrix_round_trip():
  w = BlockCSR.from_mask(np.zeros((3, 2), bool), 4)
  assert w.nnzb == 0
  np.testing.assert_array_equal(np.asarray(w.to_dense()), np.zeros((12, 8)))


def test_bf16_values(rng):
  dense = rng.standard_normal((16, 16)).astype(np.float32)
  w = BlockCSR.from_dense(jnp.asarray(dense, jnp.bfloat16), 8)
  assert w.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(w.to_dense(), np.float32), dense,
                             rtol=1e-2, atol=1e-2)
