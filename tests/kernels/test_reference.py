"""The dense reference against hand-computed cases."""

import jax.numpy as jnp
import numpy as np

from snn_jax.kernels import reference
from snn_jax.sparse import BlockCSR


def _w():
  # W (4 x 4) has two 2x2 blocks: block (0, 1) = [[1, 2], [3, 4]] and
  # block (1, 0) = [[5, 6], [7, 8]]:
  #     [[0, 0, 1, 2],
  #      [0, 0, 3, 4],
  #      [5, 6, 0, 0],
  #      [7, 8, 0, 0]]
  mask = np.array([[False, True], [True, False]])
  vals = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], np.float32)
  return BlockCSR.from_mask(mask, 2, values=vals)


def test_forward_hand_computed():
  w = _w()
  x = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  # y = x @ W = [3*5 + 4*7, 3*6 + 4*8, 1*1 + 2*3, 1*2 + 2*4] = [43, 50, 7, 10]
  y = reference.bsmm_reference(x, w.values, w.row_idx, w.col_idx, n_out=4)
  np.testing.assert_array_equal(np.asarray(y), [[43.0, 50.0, 7.0, 10.0]])


def test_dx_hand_computed():
  w = _w()
  dy = jnp.array([[1.0, 0.0, 0.0, 1.0]])
  # dx = dy @ W.T = rows of W dotted with dy: [2, 4, 5, 7]
  dx = reference.dx_reference(dy, w.values, w.row_idx, w.col_idx, n_in=4)
  np.testing.assert_array_equal(np.asarray(dx), [[2.0, 4.0, 5.0, 7.0]])


def test_sddmm_hand_computed():
  w = _w()
  x = jnp.array([[1.0, 2.0, 3.0, 4.0]])
  dy = jnp.array([[1.0, 0.0, 0.0, 1.0]])
  # x.T @ dy restricted to block (0, 1): rows x[0:2] = [1, 2] against
  # dy[2:4] = [0, 1] -> [[0, 1], [0, 2]]; block (1, 0): x[2:4] = [3, 4]
  # against dy[0:2] = [1, 0] -> [[3, 0], [4, 0]].
  dw = reference.sddmm_reference(x, dy, w.row_idx, w.col_idx, w.values)
  np.testing.assert_array_equal(np.asarray(dw), [[[0, 1], [0, 2]], [[3, 0], [4, 0]]])


def test_densify_round_trip(rng):
  dense = rng.standard_normal((12, 8)).astype(np.float32)
  dense[4:8] = 0
  w = BlockCSR.from_dense(dense, 4)
  out = reference.densify(w.values, w.row_idx, w.col_idx, n_in=12, n_out=8)
  np.testing.assert_array_equal(np.asarray(out), dense)
