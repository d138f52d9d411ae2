"""Every kernel implementation against the dense reference.

Grid: block sizes 1..128 x structures from a single block to dense, with
empty block rows and columns, x dtypes. The Pallas kernels run in interpret
mode on CPU on a smaller grid (their per-step interpretation is slow); GPU
interpret mode fills unwritten output with NaN, which ``assert_close``
rejects.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from snn_jax.kernels import (csr_cpu, mosaic_gpu, native_cpu, pallas_gpu,
                             pallas_tpu, xla)
from snn_jax.sparse import BlockCSR
from tests.conftest import assert_close

DTYPES = [jnp.float32, jnp.bfloat16]


def _structure(kind, n_rb, n_cb, rng):
  if kind == "one_block":
    m = np.zeros((n_rb, n_cb), bool)
    m[rng.integers(n_rb), rng.integers(n_cb)] = True
  elif kind == "dense":
    m = np.ones((n_rb, n_cb), bool)
  elif kind == "empty_rows_cols":
    m = rng.random((n_rb, n_cb)) < 0.6
    m[rng.integers(n_rb)] = False
    m[:, rng.integers(n_cb)] = False
    m[0, n_cb - 1] = True
  else:
    m = rng.random((n_rb, n_cb)) < float(kind)
    m[0, 0] = True
  return m


def _problem(rng, bs, kind, dtype, batch=24, n_rb=5, n_cb=4):
  mask = _structure(kind, n_rb, n_cb, rng)
  vals = rng.standard_normal((int(mask.sum()), bs, bs)).astype(np.float32)
  w = BlockCSR.from_mask(mask, bs, values=jnp.asarray(vals, dtype))
  x = jnp.asarray(rng.standard_normal((batch, n_rb * bs)), dtype)
  dy = jnp.asarray(rng.standard_normal((batch, n_cb * bs)), dtype)
  return w, x, dy


def _refs(w, x, dy):
  """Y = X W, dX = dY W^T and dW = (X^T dY) at the stored blocks, computed in
  float64 NumPy from the densified weight (an oracle independent of
  ``kernels.reference``, which tests/kernels/test_reference.py checks, and
  one with nothing to compile), rounded once to the kernels' dtype."""
  bs = w.block_size
  vals = np.asarray(jnp.asarray(w.values, jnp.float32), np.float64)
  rows, cols = np.asarray(w.row_idx), np.asarray(w.col_idx)
  n_in, n_out = w.shape
  dense = np.zeros((n_in // bs, bs, n_out // bs, bs))
  dense[rows, :, cols, :] = vals
  dense = dense.reshape(n_in, n_out)
  x64 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
  dy64 = np.asarray(jnp.asarray(dy, jnp.float32), np.float64)
  grad = (x64.T @ dy64).reshape(n_in // bs, bs, n_out // bs, bs)
  dw = grad[rows, :, cols, :]
  return tuple(jnp.asarray(a.astype(np.float32)).astype(x.dtype)
               for a in (x64 @ dense, dy64 @ dense.T, dw))


def _check_all(w, x, dy, dtype, fwd, dx, dw):
  ref_y, ref_dx, ref_dw = _refs(w, x, dy)
  assert_close(fwd(x, w), ref_y, dtype, "fwd")
  assert_close(dx(dy, w), ref_dx, dtype, "dx")
  assert_close(dw(x, dy, w), ref_dw, dtype, "dw")


KINDS = ["one_block", "0.1", "0.5", "dense", "empty_rows_cols"]


# bfloat16 on the structures with partial block rows and columns (its
# casts are the same code at every structure); float32 on all of them.
XLA_CASES = [(kind, jnp.float32) for kind in KINDS] + [
    (kind, jnp.bfloat16) for kind in ("0.5", "empty_rows_cols")]


@pytest.mark.parametrize("strategy", xla.STRATEGIES)
@pytest.mark.parametrize("bs", [1, 8, 32, 128])  # 16: Pallas, native grids
@pytest.mark.parametrize("kind, dtype", XLA_CASES)
def test_xla(rng, strategy, bs, kind, dtype):
  n_rb, n_cb = (12, 9) if bs <= 8 else (5, 4)
  w, x, dy = _problem(rng, bs, kind, dtype, n_rb=n_rb, n_cb=n_cb)
  kw = dict(strategy=strategy, chunk=3)
  _check_all(
      w, x, dy, dtype,
      lambda x, w: xla.bsmm_fwd_xla(x, w.values, w.row_idx, w.col_idx,
                                    w.col_order, n_out=w.shape[1], **kw),
      lambda dy, w: xla.bsmm_dx_xla(dy, w.values, w.row_idx, w.col_idx,
                                    n_in=w.shape[0], **kw),
      lambda x, dy, w: xla.sddmm_xla(x, dy, w.row_idx, w.col_idx,
                                     block_size=w.block_size,
                                     out_dtype=w.values.dtype, **kw))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_cpu(rng, kind, dtype):
  w, x, dy = _problem(rng, 1, kind, dtype, n_rb=40, n_cb=30)
  _check_all(
      w, x, dy, dtype,
      lambda x, w: csr_cpu.bsmm_fwd_csr_cpu(x, w.values, w.row_idx, w.col_ptr,
                                            w.col_order, n_out=w.shape[1]),
      lambda dy, w: csr_cpu.bsmm_dx_csr_cpu(dy, w.values, w.col_idx, w.row_ptr,
                                            n_in=w.shape[0]),
      lambda x, dy, w: xla.sddmm_xla(x, dy, w.row_idx, w.col_idx, block_size=1,
                                     out_dtype=w.values.dtype))


needs_native = pytest.mark.skipif(not native_cpu.AVAILABLE,
                                  reason=native_cpu.UNAVAILABLE_REASON)


def _native_fns(feature_major_operands=False):
  fm = dict(feature_major_operands=feature_major_operands)
  return (lambda x, w: native_cpu.bsmm_fwd_native(
              x, w.values, w.row_idx, w.col_ptr, w.col_order, n_out=w.shape[1],
              **fm),
          lambda dy, w: native_cpu.bsmm_dx_native(
              dy, w.values, w.row_ptr, w.col_idx, n_in=w.shape[0], **fm),
          lambda x, dy, w: native_cpu.sddmm_native(
              x, dy, w.row_idx, w.col_idx, block_size=w.block_size,
              out_dtype=w.values.dtype, **fm))


@needs_native
@pytest.mark.parametrize("bs", [1, 3, 16, 32, 128])  # 32, 128: row-major path
@pytest.mark.parametrize("kind, dtype", XLA_CASES)  # bfloat16: as for XLA
@pytest.mark.parametrize("batch", [1, 67])  # 67: lanes padded to 80, 8 tiles + 3
def test_native_cpu(rng, bs, kind, dtype, batch):
  n_rb, n_cb = (12, 9) if bs <= 8 else (5, 4)
  w, x, dy = _problem(rng, bs, kind, dtype, batch=batch, n_rb=n_rb, n_cb=n_cb)
  _check_all(w, x, dy, dtype, *_native_fns())


@needs_native
@pytest.mark.parametrize("feature_major_operands", [False, True])
@pytest.mark.parametrize("n, batch, nnz", [
    # 10 MB gathered operands: above the 8 MB from which the kernels
    # prefetch gathered rows
    (20_000, 128, 40_000),
    # 2,048 rows x 1,008 lanes (8 MB, over any L2 cache): forward and dX
    # walk the lanes in slices (LaneSliceVectors), the last one narrower
    (2_048, 1_000, 20_000),
    # 512 rows x 4,096 lanes (8 MB): slices as wide as the widest tile
    # (an L2-sized slice would be wider; 784 rows x 1,024 lanes once went
    # uncomputed that way)
    (512, 4_096, 5_000)])
@pytest.mark.slow
def test_native_cpu_large_gathered_operands(rng, feature_major_operands, n, batch, nnz):
  """Block size 1 with large gathered operands: forward, dX and dW against
  a float64 sparse oracle (no dense n x n matrix)."""
  flat = np.unique(rng.integers(0, n * n, size=nnz))
  rows, cols = flat // n, flat % n
  vals = rng.standard_normal(flat.size).astype(np.float32)
  w = BlockCSR.from_coo(rows, cols, shape=(n, n), block_size=1,
                        values=vals.reshape(-1, 1, 1))
  x = rng.standard_normal((batch, n)).astype(np.float32)
  dy = rng.standard_normal((batch, n)).astype(np.float32)
  # from_coo sorts the entries into row order: read them back from w.
  r, c = np.asarray(w.row_idx), np.asarray(w.col_idx)
  v = np.asarray(w.values, np.float64).reshape(-1)
  x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
  # scipy's float64 CSR product: np.add.at took 15 s of this test's 27.
  w64 = scipy.sparse.csr_matrix((v, (r, c)), shape=(n, n))
  ref_y = (w64.T @ x64.T).T
  ref_dx = (w64 @ dy64.T).T
  ref_dw = np.einsum("bi,bi->i", x64[:, r], dy64[:, c]).reshape(-1, 1, 1)
  fwd, dx, dw = _native_fns(feature_major_operands)
  xj, dyj = jnp.asarray(x), jnp.asarray(dy)
  assert_close(fwd(xj, w), jnp.asarray(ref_y, jnp.float32), jnp.float32, "fwd")
  assert_close(dx(dyj, w), jnp.asarray(ref_dx, jnp.float32), jnp.float32, "dx")
  assert_close(dw(xj, dyj, w), jnp.asarray(ref_dw, jnp.float32), jnp.float32, "dw")


@needs_native
@pytest.mark.parametrize("bs, kind, n_rb, n_cb, batch", [
    (1, "0.5", 40, 30, 200), (16, "0.5", 40, 30, 200),
    # dW at block size 1: many groups of stored weights, within a row and
    # spanning two, over many tasks
    (1, "0.005", 3000, 3000, 200),
    # 3,000 rows x 256 lanes (3 MB, over a 2 MB L2): forward and dX copy
    # lane slices into scratch, the slice count set by the thread count
    (1, "0.005", 3000, 3000, 256)])
def test_native_cpu_same_bits_for_any_thread_count(rng, bs, kind, n_rb, n_cb, batch):
  """The same bits on one thread and on all, with the tasks on XLA's
  intra-op pool and on the module's own (at block size 1 the fused
  backward too)."""
  w, x, dy = _problem(rng, bs, kind, jnp.float32, batch=batch, n_rb=n_rb, n_cb=n_cb)
  fwd, dx, dw = _native_fns()
  _check_all(w, x, dy, jnp.float32, fwd, dx, dw)
  before, pool_before = native_cpu.num_threads(), native_cpu.thread_pool()
  try:
    outs = []
    for pool in ("xla", "own"):
      assert native_cpu.set_thread_pool(pool) == pool
      for n in sorted({1, native_cpu.max_threads()}):
        native_cpu.set_num_threads(n)
        for _ in range(2):
          outs.append([np.asarray(f) for f in (fwd(x, w), dx(dy, w), dw(x, dy, w))])
          if bs == 1:  # the fused backward, which splits the rows its own way
            outs[-1] += [np.asarray(f) for f in _fused_bwd(x, dy, w, True, False)]
  finally:
    native_cpu.set_num_threads(before)
    native_cpu.set_thread_pool(pool_before)
  for other in outs[1:]:
    for a, b in zip(outs[0], other):
      np.testing.assert_array_equal(a, b)


def _fused_bwd(x, dy, w, fuse, feature_major_operands):
  """bsmm_bwd_native; ``fuse=None``: its default."""
  return native_cpu.bsmm_bwd_native(
      x, dy, w.values, w.row_ptr, w.col_idx, w.row_idx,
      **({} if fuse is None else dict(fuse=fuse)),
      feature_major_operands=feature_major_operands)


@needs_native
# rows of 24 stored weights (three whole groups of eight), of about 12
# (one group and a tail), of 0 to 6 (tails only) and empty ones
@pytest.mark.parametrize("kind", ["dense", "0.5", "empty_rows_cols", "0.1"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 67])
@pytest.mark.parametrize("feature_major_operands", [False, True])
def test_native_cpu_fused_backward_gives_the_two_kernels_bits(
    rng, kind, dtype, batch, feature_major_operands):
  """The block-size-1 backward in one call -- fused, the two kernels inside
  it, and its default -- gives bit for bit what bsmm_dx_native and
  sddmm_native give apart, and agrees with the float64 oracle; a NaN in dY
  reaches every dX and dW entry it feeds."""
  w, x, dy = _problem(rng, 1, kind, dtype, batch=batch, n_rb=40, n_cb=24)
  if kind == "0.5":
    dy = dy.at[0, 3].set(jnp.nan)
  fm = dict(feature_major_operands=feature_major_operands)
  _, dx_fn, dw_fn = _native_fns(**fm)
  want = [np.asarray(dx_fn(dy, w).astype(jnp.float32)),
          np.asarray(dw_fn(x, dy, w).astype(jnp.float32))]
  for fuse in (None, True, False):
    got = _fused_bwd(x, dy, w, fuse, **fm)
    assert [g.dtype for g in got] == [dtype, dtype]
    assert got[0].shape == x.shape and got[1].shape == w.values.shape
    for g, r in zip(got, want):
      np.testing.assert_array_equal(np.asarray(g.astype(jnp.float32)), r)
  if kind == "0.5":
    stored_in_col3 = np.asarray(w.col_idx) == 3
    dx = want[0]
    rows_of_col3 = np.asarray(w.row_idx)[stored_in_col3]
    assert np.isnan(dx[0, rows_of_col3]).all()
    assert np.isfinite(np.delete(dx[0], rows_of_col3)).all()
    assert np.isfinite(dx[1:]).all()
    dw = want[1].reshape(-1)
    assert np.isnan(dw[stored_in_col3]).all()
    assert np.isfinite(dw[~stored_in_col3]).all()
  else:
    _, ref_dx, ref_dw = _refs(w, x, dy)
    assert_close(got[0], ref_dx, dtype, "dx")
    assert_close(got[1], ref_dw, dtype, "dw")


@needs_native
def test_native_cpu_fused_backward_refuses_bad_arguments(rng):
  w, x, dy = _problem(rng, 3, "0.5", jnp.float32)
  with pytest.raises(ValueError, match="block size 1"):
    _fused_bwd(x, dy, w, None, False)
  w, x, dy = _problem(rng, 1, "0.5", jnp.float32)
  for bad in ("yes", None, 1):
    with pytest.raises(ValueError, match="fuse must be True or False"):
      native_cpu.bsmm_bwd_native(x, dy, w.values, w.row_ptr, w.col_idx,
                                 w.row_idx, fuse=bad)


@needs_native
@pytest.mark.parametrize("name", ["XLA", "", "threads"])
def test_native_cpu_thread_pool_rejects_unknown_names(name):
  before = native_cpu.thread_pool()
  with pytest.raises(ValueError, match="'xla' or 'own'"):
    native_cpu.set_thread_pool(name)
  assert native_cpu.thread_pool() == before


# 16 lanes: float32 used in place (a multiple of every target's vector width);
# 1 and 67: widened into padded scratch.
FEATURE_MAJOR_BATCHES = [1, 16, 67]


@needs_native
@pytest.mark.parametrize("bs", [1, 3, 16])
@pytest.mark.parametrize("kind", ["0.5", "empty_rows_cols"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", FEATURE_MAJOR_BATCHES)
@pytest.mark.slow
def test_native_cpu_feature_major_operands(rng, bs, kind, dtype, batch):
  """Operands handed over feature-major (XLA lays them out {0,1}) agree
  with the oracle and give the bits of the batch-major call."""
  n_rb, n_cb = (12, 9) if bs <= 8 else (5, 4)
  w, x, dy = _problem(rng, bs, kind, dtype, batch=batch, n_rb=n_rb, n_cb=n_cb)
  assert native_cpu.feature_major(bs)
  rows = [np.asarray(f(*a, w).astype(jnp.float32)) for f, a in
          zip(_native_fns(), ((x,), (dy,), (x, dy)))]
  fwd, dx, dw = _native_fns(feature_major_operands=True)
  _check_all(w, x, dy, dtype, fwd, dx, dw)
  for f, a, row in zip((fwd, dx, dw), ((x,), (dy,), (x, dy)), rows):
    np.testing.assert_array_equal(np.asarray(f(*a, w).astype(jnp.float32)), row)


# Not named for native_cpu: what it checks is XLA's side of the handover
# (the layout change folded into the neighbouring fusions), the same for
# every compiled target, so the every-target runs leave it out
# (tests/kernels/test_native_targets.py). Block sizes 1 and 3: the lane
# paths in place and widened at both.
@needs_native
@pytest.mark.parametrize("bs", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", FEATURE_MAJOR_BATCHES)
@pytest.mark.slow
def test_feature_major_handover_folds_into_a_producer_and_a_consumer(
    rng, bs, dtype, batch):
  """Inside one jit, with the layout change folded into a producer and a
  consumer, the feature-major calls give the bits of the batch-major ones."""
  w, x, dy = _problem(rng, bs, "0.5", dtype, batch=batch, n_rb=12, n_cb=9)
  fwd, dx, dw = _native_fns(feature_major_operands=True)
  fused = jax.jit(lambda x, dy, w: (
      jnp.tanh(fwd(x * 2, w)), jnp.tanh(dx(dy * 2, w)), dw(x * 2, dy * 2, w)))
  fwd_b, dx_b, dw_b = _native_fns()
  want = (jnp.tanh(fwd_b(x * 2, w)), jnp.tanh(dx_b(dy * 2, w)),
          dw_b(x * 2, dy * 2, w))
  for g, r in zip(fused(x, dy, w), want):
    np.testing.assert_array_equal(np.asarray(g.astype(jnp.float32)),
                                  np.asarray(r.astype(jnp.float32)))


@needs_native
def test_native_cpu_feature_major_refused_for_row_major_blocks(rng):
  w, x, _ = _problem(rng, 32, "0.5", jnp.float32, batch=8)
  assert not native_cpu.feature_major(32)
  fwd, _, _ = _native_fns(feature_major_operands=True)
  with pytest.raises(Exception, match="feature-major operands are only taken"):
    jax.block_until_ready(fwd(x, w))


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_cpu_propagates_non_finite(rng, dtype):
  w, x, dy = _problem(rng, 4, "dense", dtype, batch=20, n_rb=3, n_cb=2)
  fwd, dx, dw = _native_fns()
  x = x.at[3, 5].set(jnp.nan).at[7, 0].set(jnp.inf)
  y = np.asarray(fwd(x, w).astype(jnp.float32))
  assert np.isnan(y[3]).all() and not np.isfinite(y[7]).any()
  assert np.isfinite(np.delete(y, [3, 7], axis=0)).all()
  w_nan = w.replace(values=w.values.at[0, 1, 2].set(jnp.nan))  # block (0, 0)
  y = np.asarray(fwd(jnp.asarray(rng.standard_normal(x.shape), dtype),
                     w_nan).astype(jnp.float32))
  assert np.isnan(y[:, 2]).all() and np.isfinite(np.delete(y, 2, axis=1)).all()
  d = np.asarray(dx(dy, w_nan).astype(jnp.float32))
  assert np.isnan(d[:, 1]).all() and np.isfinite(np.delete(d, 1, axis=1)).all()
  # dW: x[3, 5] (block row 1, inner row 1) poisons that row of blocks 2 and
  # 3; x[7, 0] (block row 0, inner row 0) that row of blocks 0 and 1.
  g = np.asarray(dw(x, dy, w).astype(jnp.float32))
  bad = np.zeros(g.shape, bool)
  bad[2:4, 1] = bad[0:2, 0] = True
  assert not np.isfinite(g[bad]).any() and np.isfinite(g[~bad]).all()


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("feature_major_operands", [False, True])
# 1: a single row; 67: lanes and the batch-major column groups not whole;
# 300 x 1000: many tasks
@pytest.mark.parametrize("batch, n", [(1, 5), (67, 131), (300, 1000)])
def test_native_bias_grad(rng, dtype, feature_major_operands, batch, n):
  """``bias_grad_native``: dy summed over the batch in float32, in either
  layout, the same bits for every thread count, non-finite entries
  reaching only their own column."""
  dy = jnp.asarray(rng.standard_normal((batch, n)), dtype)
  f = jax.jit(functools.partial(native_cpu.bias_grad_native,
                                feature_major_operands=feature_major_operands))
  want = np.asarray(dy.astype(jnp.float32), np.float64).sum(0)
  assert_close(f(dy), jnp.asarray(want, jnp.float32).astype(dtype), dtype, "db")
  assert f(dy).dtype == dtype and f(dy).shape == (n,)
  before = native_cpu.num_threads()
  try:
    outs = []
    for t in sorted({1, native_cpu.max_threads()}):
      native_cpu.set_num_threads(t)
      outs.append(np.asarray(f(dy).astype(jnp.float32)))
  finally:
    native_cpu.set_num_threads(before)
  for o in outs[1:]:
    np.testing.assert_array_equal(outs[0], o)
  bad = np.asarray(f(dy.at[batch - 1, n - 1].set(jnp.nan)).astype(jnp.float32))
  assert np.isnan(bad[-1]) and np.isfinite(bad[:-1]).all()


@pytest.mark.parametrize("bs", [16, 32])
@pytest.mark.parametrize("kind", ["one_block", "0.5", "empty_rows_cols"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pallas_gpu_interpret(rng, bs, kind, dtype):
  w, x, dy = _problem(rng, bs, kind, dtype, batch=40, n_rb=3, n_cb=4)
  kw = dict(batch_tile=16, interpret=True)  # batch 40 -> padded to 48
  _check_all(
      w, x, dy, dtype,
      lambda x, w: pallas_gpu.bsmm_fwd_pallas(
          x, w.values, w.col_ptr, w.col_order, w.row_idx, n_out=w.shape[1], **kw),
      lambda dy, w: pallas_gpu.bsmm_dx_pallas(
          dy, w.values, w.row_ptr, w.col_idx, n_in=w.shape[0], **kw),
      lambda x, dy, w: pallas_gpu.sddmm_pallas(
          x, dy, w.row_idx, w.col_idx, block_size=w.block_size,
          out_dtype=w.values.dtype, **kw))


@pytest.mark.skipif(not mosaic_gpu.AVAILABLE, reason="no Mosaic GPU backend")
@pytest.mark.parametrize("bs", mosaic_gpu.BLOCK_SIZES)
@pytest.mark.parametrize("kind", ["one_block", "empty_rows_cols"])
def test_mosaic_gpu_interpret(rng, bs, kind):
  """The Mosaic GPU forward in the GPU interpreter (NaN-filled memory, race
  detector on), bfloat16: batch 70 pads to two tiles, empty columns write
  zeros."""
  dtype = jnp.bfloat16
  w, x, dy = _problem(rng, bs, kind, dtype, batch=70, n_rb=3, n_cb=4)
  y = mosaic_gpu.bsmm_fwd_mosaic(x, w.values, w.col_ptr, w.col_order,
                                 w.row_idx, n_out=w.shape[1], interpret=True)
  assert y.shape == (70, w.shape[1]) and y.dtype == dtype
  assert_close(y, _refs(w, x, dy)[0], dtype, "fwd")
  assert not mosaic_gpu.races_found()


def test_mosaic_gpu_interpret_refuses_float32(rng):
  w, x, _ = _problem(rng, 64, "one_block", jnp.float32, n_rb=1, n_cb=1)
  with pytest.raises(NotImplementedError, match="transposed.*interpreter"):
    mosaic_gpu.bsmm_fwd_mosaic(x, w.values, w.col_ptr, w.col_order, w.row_idx,
                               n_out=64, interpret=True)


@pytest.mark.parametrize("kind", ["one_block", "empty_rows_cols"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.slow
def test_pallas_tpu_interpret(rng, kind, dtype):
  w, x, dy = _problem(rng, 128, kind, dtype, batch=20, n_rb=2, n_cb=3)
  kw = dict(batch_tile=8, interpret=True)
  _check_all(
      w, x, dy, dtype,
      lambda x, w: pallas_tpu.bsmm_fwd_pallas_tpu(
          x, w.values, w.col_ptr, w.col_order, w.row_idx, n_out=w.shape[1], **kw),
      lambda dy, w: pallas_tpu.bsmm_dx_pallas_tpu(
          dy, w.values, w.row_ptr, w.col_idx, n_in=w.shape[0], **kw),
      lambda x, dy, w: pallas_tpu.sddmm_pallas_tpu(
          x, dy, w.row_idx, w.col_idx, block_size=w.block_size,
          out_dtype=w.values.dtype, **kw))


def test_tpu_visit_schedule_covers_every_column():
  mask = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)  # columns 1, 3 empty
  w = BlockCSR.from_mask(mask, 1)
  blk, seg, first, valid = (np.asarray(a) for a in
                            pallas_tpu.visit_schedule(w.col_ptr, w.col_order))
  assert blk.size == w.nnzb + 4
  # Real visits: column 0 twice (blocks 0 and 2 in storage), then 1 (zero
  # visit), 2 (block 1), 3 (zero visit); padding repeats column 3.
  np.testing.assert_array_equal(seg, [0, 0, 1, 2, 3, 3, 3])
  np.testing.assert_array_equal(first, [1, 0, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(valid, [1, 1, 0, 1, 0, 0, 0])
  np.testing.assert_array_equal(blk[valid == 1], [0, 2, 1])
  assert np.all(np.diff(seg) >= 0)  # consecutive visits per output block


@pytest.mark.parametrize("fn, bs, match", [
    (functools.partial(pallas_gpu.bsmm_fwd_pallas, n_out=8, interpret=True), 8,
     r"block sizes \(16, 32, 64, 128\).*got 8"),
    (functools.partial(pallas_gpu.bsmm_fwd_pallas, n_out=48, interpret=True),
     48, "power-of-two shapes.*got 48"),
    (functools.partial(pallas_gpu.bsmm_fwd_pallas, n_out=256, interpret=True),
     256, "256 overflows shared memory"),
    (functools.partial(pallas_tpu.bsmm_fwd_pallas_tpu, n_out=64, interpret=True),
     64, "multiple of 128"),
    (functools.partial(pallas_tpu.bsmm_fwd_pallas_tpu, n_out=2048,
                       interpret=True), 2048, "up to 1024.*overflow VMEM"),
])
def test_pallas_refuses_unsupported_blocks(fn, bs, match):
  w = BlockCSR.from_mask(np.ones((1, 1), bool), bs)
  with pytest.raises(ValueError, match=match):
    fn(jnp.ones((16, bs)), w.values, w.col_ptr, w.col_order, w.row_idx)


def test_unknown_xla_strategy():
  w = BlockCSR.from_mask(np.ones((1, 1), bool), 4)
  with pytest.raises(ValueError, match="strategy"):
    xla.bsmm_fwd_xla(jnp.ones((2, 4)), w.values, w.row_idx, w.col_idx,
                     w.col_order, n_out=4, strategy="nope")
