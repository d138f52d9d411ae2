"""The host oracle's rules (``host_oracle``) on hand-made cases: the
definitions the engine's device rules are checked against
(``test_engine``), so they are checked here first."""

import numpy as np
import pytest

from snn_jax import topology
from tests.sparse_training.host_oracle import (grow_by_gradient, grow_by_score,
                                               grow_random, magnitude_drop,
                                               merge, set_drop)


def test_set_drop_removes_exactly_the_smallest_positive_and_largest_negative(rng):
  w = rng.normal(size=1000).astype(np.float32)
  drop = set_drop(w.reshape(-1, 1, 1), 0.3)
  pos, neg = w[w >= 0], w[w < 0]
  k_pos, k_neg = round(0.3 * pos.size), round(0.3 * neg.size)
  expected = set(np.sort(pos)[:k_pos]) | set(np.sort(neg)[::-1][:k_neg])
  assert set(w[drop]) == expected
  assert drop.sum() == k_pos + k_neg
  # Every kept positive is larger than every dropped positive, and so on.
  assert w[~drop & (w >= 0)].min() > w[drop & (w >= 0)].max()
  assert w[~drop & (w < 0)].max() < w[drop & (w < 0)].min()


def test_block_drop_removes_the_smallest_norm_blocks(rng):
  v = rng.normal(size=(50, 4, 4)).astype(np.float32)
  v *= rng.uniform(0.1, 3, size=(50, 1, 1)).astype(np.float32)
  drop = set_drop(v, 0.2)  # block size > 1: by Frobenius norm
  norms = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2)))
  assert drop.sum() == 10
  assert norms[drop].max() < norms[~drop].min()
  np.testing.assert_array_equal(drop, magnitude_drop(v, 10))


@pytest.mark.parametrize("grid", [(20, 30), (5000, 5000)])  # mask / rejection
@pytest.mark.slow
def test_grow_random_picks_distinct_empty_positions(rng, grid):
  n = grid[0] * grid[1]
  occ = rng.choice(n, size=n // 10, replace=False)
  rows, cols = np.divmod(np.sort(occ), grid[1])
  gr, gc = grow_random(rows, cols, grid, 50, rng)
  new = set(zip(gr.tolist(), gc.tolist()))
  assert len(new) == 50
  assert not new & set(zip(rows.tolist(), cols.tolist()))
  assert (gr < grid[0]).all() and (gc < grid[1]).all()


def test_grow_by_score_takes_the_best_empty_positions(rng):
  scores = rng.uniform(size=(8, 9))
  rows, cols = np.nonzero(scores > 0.7)
  gr, gc = grow_by_score(rows, cols, scores, 5)
  empty = np.where(scores > 0.7, -1, scores)
  best = np.argsort(-empty.ravel())[:5]
  assert set(zip(gr.tolist(), gc.tolist())) == set(
      zip(*[a.tolist() for a in np.divmod(best, 9)]))


def test_grow_errors_when_full(rng):
  rows, cols = np.divmod(np.arange(12), 4)
  with pytest.raises(ValueError, match="only 0 positions are empty"):
    grow_random(rows, cols, (3, 4), 1, rng)


def test_merge_refuses_to_change_nnzb():
  with pytest.raises(ValueError, match="nnzb would change"):
    merge(np.array([0, 1]), np.array([0, 0]), np.array([True, False]),
          np.zeros(0, np.int64), np.zeros(0, np.int64), 4)


@pytest.mark.parametrize("bs,chunk,dead_inputs,dead_outputs", [
    (1, 64, 0, 0), (1, 1 << 24, 0, 0), (4, 200, 0, 0), (4, 16, 0, 0),
    # Inputs that are zero on the batch give whole rows of zero scores: the
    # k-th best is a tie shared by many positions, decided by position.
    (1, 64, 40, 0), (4, 16, 40, 0), (1, 200, 63, 0),
    # Outputs without gradient (units that feed nothing, as in a sparse
    # layer before a sparse head) give zero columns: whole chunks tie at
    # zero, and only the first of them by position may be kept.
    (1, 64, 0, 90), (1, 1 << 24, 30, 80), (4, 16, 0, 88)])
def test_grow_by_gradient_chooses_as_the_dense_scores_do(rng, bs, chunk,
                                                         dead_inputs,
                                                         dead_outputs):
  t = topology.make("erdos_renyi", 64, 96, density=0.2, block_size=bs, seed=3)
  x = rng.normal(size=(12, 64)).astype(np.float32)
  x[:, rng.permutation(64)[:dead_inputs]] = 0.0
  dy = rng.normal(size=(12, 96)).astype(np.float32)
  dy[:, rng.permutation(96)[:dead_outputs]] = 0.0
  g = (x.T @ dy).astype(np.float64).reshape(64 // bs, bs, 96 // bs, bs)
  scores = np.sqrt((g ** 2).sum(axis=(1, 3)))
  k = 37 // bs + 3
  want = grow_by_score(t.rows, t.cols, scores, k)
  got = grow_by_gradient(t.rows, t.cols, x, dy, k, bs, chunk_floats=chunk)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  occupied = set(zip(t.rows.tolist(), t.cols.tolist()))
  assert not occupied & set(zip(got[0].tolist(), got[1].tolist()))
  with pytest.raises(ValueError, match="only"):
    grow_by_gradient(t.rows, t.cols, x, dy, 10 ** 6, bs)
