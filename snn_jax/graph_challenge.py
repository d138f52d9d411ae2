"""The MIT/IEEE Sparse DNN Graph Challenge inference task on our kernels.

Kepner et al., "Sparse Deep Neural Network Graph Challenge", IEEE HPEC 2019
(arXiv:1909.05631): ``n_layers`` layers of ``n`` neurons, 32 connections per
neuron, every weight 1/16, one bias per size (-0.3, -0.35, -0.4, -0.45 for
1,024 / 4,096 / 16,384 / 65,536 neurons), and

    Y_{l+1} = min(max(Y_l W_l + b, 0), 32)

applied to MNIST images resized to ``sqrt(n) x sqrt(n)`` and binarised. The
answer is the set of *categories*: the inputs (rows of the final Y) with any
nonzero entry. The rate is ``inputs x edges / time`` (edges = n x 32 x
layers). The challenge's reference applies the bias only to the nonzero
entries of Y_l W_l; with a negative bias this equals the dense formula
above (a zero entry becomes the negative bias and then zero), which is what
the dense-activation kernels compute.

Two kinds of network:

* **The official files** (:func:`read_layers`, :func:`read_inputs`,
  :func:`read_categories`, :func:`run_official`): the challenge's TSV layer
  files ``n<N>-l<L>.tsv[.gz]`` (``row<TAB>col<TAB>value``, 1-based), its
  TSV inputs ``sparse-images-<N>.tsv[.gz]`` (``image<TAB>pixel<TAB>1``) and
  its truth ``neuron<N>-l<L>-categories.tsv`` (1-based input indices). The
  categories we compute must equal the truth exactly, or the run fails.
* **Look-alike networks** (:func:`challenge_network`), for sizes whose
  files are not at hand: RadiX-Net-style layers of the same sizes, degree
  and weights -- layer l joins neuron j to ``(j + m * P_l) mod n`` for
  ``m < 32``, with the place value ``P_l`` cycling through ``1, 32, 32^2,
  ...`` (capped at ``n / 32`` so the 32 neighbours stay distinct). They are
  not the challenge's graphs (which also permute neurons), so their
  categories are checked against ``scipy.sparse`` on the same network in
  the same process, never against the truth files; their rows say
  ``network="look-alike"``.

Every pipeline here works on a list of ``scipy.sparse`` CSR weight
matrices (``[n, n]`` float32, rows = inputs), from either source.
Inputs are streamed through our kernels in batches (``batch_size``), so
memory stays bounded by the batch, not by the number of inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import resource
import sys
import time
import zlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import scipy.sparse as sp

from snn_jax.data import find_idx
from snn_jax.kernels import native_cpu
from snn_jax.ops import bsmm, resolve_impl
from snn_jax.sparse import BlockCSR, block_metadata
from snn_jax.topology import Topology

CONNECTIONS = 32
WEIGHT = 1.0 / 16.0
YMAX = 32.0
BIAS = {1024: -0.3, 4096: -0.35, 16384: -0.4, 65536: -0.45}
LAYERS = (120, 480, 1920)


def _check_size(n_neurons: int) -> None:
  if n_neurons not in BIAS:
    raise ValueError(f"n_neurons must be one of the challenge sizes "
                     f"{sorted(BIAS)}, got {n_neurons}")


def place_values(n_neurons: int) -> list[int]:
  """The cycle of place values P_l (module docstring)."""
  places, p = [], 1
  while p * CONNECTIONS <= n_neurons:
    places.append(p)
    p *= CONNECTIONS
  if places[-1] * CONNECTIONS < n_neurons:
    places.append(n_neurons // CONNECTIONS)
  return places


def challenge_network(n_neurons: int, n_layers: int) -> list[Topology]:
  """``n_layers`` neuron-level topologies of ``n_neurons`` units, 32
  connections per neuron (in and out)."""
  _check_size(n_neurons)
  if n_layers < 1:
    raise ValueError(f"n_layers must be >= 1, got {n_layers}")
  places = place_values(n_neurons)
  j = np.arange(n_neurons, dtype=np.int64)
  m = np.arange(CONNECTIONS, dtype=np.int64)
  layers = []
  for l in range(n_layers):
    p = places[l % len(places)]
    rows = np.repeat(j, CONNECTIONS)
    cols = ((j[:, None] + m[None, :] * p) % n_neurons).ravel()
    layers.append(Topology(n_neurons, n_neurons, rows, cols, name="radixnet",
                           params={"place": p, "radix": CONNECTIONS}))
  return layers


def challenge_inputs(images: np.ndarray, n_neurons: int, *,
                     chunk: int = 1024) -> sp.csr_matrix:
  """uint8/float ``[N, 28, 28]`` MNIST images -> sparse float32 CSR
  ``[N, n_neurons]`` (the challenge's inputs are sparse): bilinearly
  resized to ``sqrt(n) x sqrt(n)`` and binarised at half the maximum
  intensity (pixels are 0 or 1, as in the challenge's inputs). Resized
  ``chunk`` images at a time, so no dense ``[N, n_neurons]`` array is ever
  formed."""
  _check_size(n_neurons)
  side = int(round(np.sqrt(n_neurons)))
  if side * side != n_neurons:
    raise ValueError(f"{n_neurons} neurons is not a square image size")
  images = np.asarray(images)
  if images.ndim != 3:
    raise ValueError(f"images must be [N, H, W], got shape {images.shape}")
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  zoom = (1, side / images.shape[1], side / images.shape[2])
  thresh = 0.5 * float(images.max(initial=0) or 1.0)
  parts = []
  for start in range(0, len(images), chunk):
    imgs = images[start:start + chunk].astype(np.float32)
    resized = scipy.ndimage.zoom(imgs, zoom, order=1)
    parts.append(sp.csr_matrix(
        (resized > thresh).reshape(len(imgs), n_neurons).astype(np.float32)))
  if not parts:
    return sp.csr_matrix((0, n_neurons), dtype=np.float32)
  return sp.vstack(parts, format="csr", dtype=np.float32)


def _as_weights(layer: Topology | sp.spmatrix) -> sp.csr_matrix:
  if isinstance(layer, Topology):
    if layer.block_size != 1:
      raise ValueError("challenge layers must be neuron-level topologies")
    return scipy_network([layer])[0]
  if sp.isspmatrix_csr(layer) and layer.dtype == np.float32:
    return layer  # already in form: no copy (stack_network passes these on)
  return sp.csr_matrix(layer, dtype=np.float32)


def to_blocks(layer: Topology | sp.spmatrix, block_size: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A layer (a neuron-level topology of weight ``WEIGHT``, or a weight
  matrix) as blocks of ``block_size``: the block rows and columns holding
  at least one edge, and float32 ``values[nnzb, bs, bs]`` with the weights
  at the edges and zeros elsewhere in the block."""
  w = _as_weights(layer).tocoo()
  n_in, n_out = w.shape
  if n_in % block_size or n_out % block_size:
    raise ValueError(f"block_size {block_size} does not divide {n_in}x{n_out}")
  r, c = w.row.astype(np.int64), w.col.astype(np.int64)
  n_cb = n_out // block_size
  key = (r // block_size) * n_cb + c // block_size
  blocks, inverse = np.unique(key, return_inverse=True)
  values = np.zeros((blocks.size, block_size, block_size), np.float32)
  values[inverse, r % block_size, c % block_size] = w.data
  br, bc = np.divmod(blocks, n_cb)
  return br, bc, values


@dataclasses.dataclass(frozen=True)
class StackedNetwork:
  """All layers' BlockCSR arrays stacked on a leading layer axis, for a
  ``lax.scan`` over layers (every layer has the same nnzb)."""
  values: jax.Array
  index: dict[str, jax.Array]
  n_neurons: int
  block_size: int

  edges: int

  @property
  def fill(self) -> float:
    """Fraction of stored block entries that are edges."""
    return self.edges / self.values.size

  @functools.cached_property
  def column_view(self) -> tuple[jax.Array, jax.Array]:
    """Block size 1: every layer's values and row indices in column order
    (``values[col_order]``, ``row_idx[col_order]``, each ``[L, nnz]``), for
    the fused native inference (:func:`infer_fused`); built once per
    network, on first use. Raises ValueError for non-finite weights."""
    if self.block_size != 1:
      raise ValueError("the column view is for block size 1, this network "
                       f"has block size {self.block_size}")
    order = self.index["col_order"]
    values = self.values.reshape(order.shape)
    if not bool(jnp.isfinite(values).all()):
      raise ValueError("the network has non-finite weights: the fused "
                       "inference (which never multiplies a zero activation) "
                       "and the bsmm path would differ on them; use infer()")
    return (jnp.take_along_axis(values, order, axis=1),
            jnp.take_along_axis(self.index["row_idx"], order, axis=1))


def stack_network(layers: Sequence[Topology | sp.spmatrix],
                  block_size: int = 1) -> StackedNetwork:
  """Stacks the layers (topologies of weight ``WEIGHT``, or weight
  matrices) for a scan. Layers with fewer blocks than the largest are
  padded with explicit zero blocks at empty positions (lowest first), so
  every layer has one nnzb; ``fill`` reports the resulting waste."""
  layers = [_as_weights(w) for w in layers]
  n = layers[0].shape[0]
  nb = n // block_size
  per_layer = [to_blocks(t, block_size) for t in layers]
  nnzb = max(br.size for br, _, _ in per_layer)
  vals, idx = [], {k: [] for k in ("row_ptr", "col_idx", "row_idx", "col_ptr",
                                   "col_order")}
  for i in range(len(per_layer)):
    br, bc, v = per_layer[i]
    per_layer[i] = None  # its int64 block coordinates go once indexed
    pad = nnzb - br.size
    if pad:
      free = np.ones(nb * nb, bool)
      free[br * nb + bc] = False
      extra = np.flatnonzero(free)[:pad]
      key = np.concatenate([br * nb + bc, extra])
      order = np.argsort(key)
      br, bc = np.divmod(key[order], nb)
      v = np.concatenate([v, np.zeros((pad, block_size, block_size), v.dtype)])[order]
    meta = block_metadata(br, bc, nb, nb)
    vals.append(v)
    for k in idx:
      idx[k].append(meta[k])
  n_edges = int(sum(w.nnz for w in layers))

  def stacked(parts):  # one host copy at a time, freed once on the device
    arr = jnp.asarray(np.stack(parts))
    parts.clear()
    return arr

  return StackedNetwork(stacked(vals), {k: stacked(v) for k, v in idx.items()},
                        n, block_size, n_edges)


def _bucket(n: int) -> int:
  """Rows padded up to the next of a geometric ladder (ratio ~1.19, multiples
  of 8): few distinct shapes, at most ~19% padding."""
  b = 8
  while b < n:
    b = -(-int(b * 1.19) // 8) * 8
  return b


@jax.jit
def _live_rows(y):
  return jnp.any(y != 0, axis=1)


@jax.jit
def _gather_rows(y, idx):
  return jnp.take(y, idx, axis=0, mode="fill", fill_value=0)


def prune_dead_rows(segment_fn, y0: np.ndarray, n_layers: int,
                    segment: int) -> np.ndarray:
  """Runs ``segment_fn(y, start, length)`` (``length`` layers from layer
  ``start``) over all layers, dropping the inputs whose activations are all
  zero between segments: with a negative bias a zero row stays zero, so they
  are finished (the sparse formulation skips them the same way).

  Segments start at one layer and double (up to ``segment``) once a segment
  kills fewer than 0.5% of the live rows, so the many inputs that die in
  the first layers are dropped early and the survivors run in long segments.
  Live rows are compacted on the device and padded with zero rows to a
  ladder of sizes (``_bucket``); only the live mask crosses to the host, and
  each (bucket, segment length) compiles once."""
  n_rows = len(y0)
  rows = np.arange(n_rows)
  padded = np.zeros((_bucket(n_rows), y0.shape[1]), np.float32)
  padded[:n_rows] = y0
  y = jnp.asarray(padded)
  start, length = 0, 1
  while start < n_layers and len(rows):
    length = min(length, n_layers - start)
    y = segment_fn(y, start, length)
    start += length
    keep = np.flatnonzero(np.asarray(_live_rows(y))[:len(rows)])
    dying = 1.0 - len(keep) / len(rows)
    if len(keep) < len(rows):
      idx = np.full(_bucket(len(keep)), y.shape[0], np.int32)  # pad: zero rows
      idx[:len(keep)] = keep
      y = _gather_rows(y, jnp.asarray(idx))
      rows = rows[keep]
    length = 1 if dying > 0.005 else min(2 * length, segment)
  out = np.zeros(y0.shape, np.float32)
  out[rows] = np.asarray(y)[:len(rows)]
  return out


@functools.lru_cache(maxsize=None)
def _segment_runner(n: int, bs: int, impl: str):
  """A jitted ``run(values, index, y, start, length)``: ``length`` layers of
  the stacked network from layer ``start`` through ``bsmm`` (cached, so
  repeated inference reuses the compiled code)."""
  bias = jnp.float32(BIAS[n])

  def product(y, v, ix):
    w = BlockCSR.tree_unflatten(((n, n), bs), (v, ix["col_idx"], ix["row_ptr"],
                                               ix["row_idx"], ix["col_order"],
                                               ix["col_ptr"]))
    return bsmm(y, w, impl=impl)

  @functools.partial(jax.jit, static_argnames=("length",))
  def run(values, index, y, start, length):
    sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, length, 0)

    def layer(y, xs):
      return jnp.clip(product(y, *xs) + bias, 0.0, YMAX), None

    y, _ = jax.lax.scan(layer, y, (sl(values), jax.tree.map(sl, index)))
    return y

  return run


def infer(net: StackedNetwork, y0: np.ndarray, *, impl: str = "auto",
          segment: int = 16) -> np.ndarray:
  """Final activations float32[N, n] through ``bsmm`` (a ``lax.scan`` over
  up to ``segment`` layers at a time, dead inputs dropped in between)."""
  resolve_impl(impl, net.block_size)  # a bad impl fails here, not in a trace
  run = _segment_runner(net.n_neurons, net.block_size, impl)
  return prune_dead_rows(
      lambda y, start, length: run(net.values, net.index, y, start, length=length),
      np.asarray(y0, np.float32), net.values.shape[0], segment)


def fused_available(net: StackedNetwork) -> bool:
  """Whether :func:`infer_fused` can run ``net`` here: block size 1 and the
  native CPU kernels built, on a CPU backend."""
  return (net.block_size == 1 and native_cpu.AVAILABLE
          and jax.default_backend() == "cpu")


@functools.lru_cache(maxsize=None)
def _fused_runner(n: int, n_layers: int):
  bias, ymax = BIAS[n], YMAX
  return jax.jit(lambda y, values, index, col_values, col_rows:
                 native_cpu.relu_layers_native(
                     y, values, index["col_idx"], index["row_ptr"], col_values,
                     col_rows, index["col_ptr"], 0, length=n_layers, bias=bias,
                     ymax=ymax))


def infer_fused(net: StackedNetwork, y0: np.ndarray) -> np.ndarray:
  """Final activations float32[N, n], all layers in one native call
  (``kernels.native_cpu.relu_layers_native``): no per-layer dispatch,
  inputs dropped inside as they die, each layer a scatter over the nonzero
  activations where they are sparse (the challenge's own formulation) and
  the block-size-1 gather where they are not. Same bits as :func:`infer`.
  Needs :func:`fused_available`."""
  if not fused_available(net):
    raise ValueError(
        "infer_fused needs block size 1 and the native CPU kernels on a CPU "
        f"backend (block size {net.block_size}, native kernels "
        f"{'built' if native_cpu.AVAILABLE else 'not built'}, backend "
        f"{jax.default_backend()}); use infer()")
  col_values, col_rows = net.column_view
  run = _fused_runner(net.n_neurons, int(net.values.shape[0]))
  return np.asarray(run(jnp.asarray(y0, jnp.float32), net.values, net.index,
                        col_values, col_rows))


def streamed_categories(run: Callable[[np.ndarray], np.ndarray],
                        inputs: np.ndarray | sp.spmatrix,
                        batch_size: int) -> np.ndarray:
  """Categories of all ``inputs`` (rows), computed ``batch_size`` rows at a
  time by ``run(dense float32[b, n]) -> final activations``: only one
  batch is ever dense, so memory is bounded by the batch."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  inputs = inputs.tocsr() if sp.issparse(inputs) else inputs
  found = []
  for start in range(0, inputs.shape[0], batch_size):
    chunk = inputs[start:start + batch_size]
    dense = chunk.toarray() if sp.issparse(chunk) else np.asarray(chunk)
    found.append(categories(run(dense.astype(np.float32, copy=False))) + start)
  return np.concatenate(found) if found else np.zeros(0, np.int64)


def scipy_network(layers: list[Topology]) -> list[sp.csr_matrix]:
  """The layers as ``scipy.sparse`` CSR matrices of weight 1/16."""
  return [sp.csr_matrix((np.full(t.nnz, WEIGHT, np.float32), (t.rows, t.cols)),
                        shape=(t.n_in, t.n_out)) for t in layers]


def infer_scipy(weights: list[sp.csr_matrix], y0: np.ndarray | sp.spmatrix
                ) -> sp.csr_matrix:
  """The challenge's sparse formulation with ``scipy.sparse`` (the
  reference): bias added to the nonzeros of Y W, then ReLU and clip."""
  bias = BIAS[weights[0].shape[0]]
  y = sp.csr_matrix(y0)
  for w in weights:
    y = y @ w
    y.data += bias
    np.clip(y.data, 0.0, YMAX, out=y.data)
    y.eliminate_zeros()
  return y


def dense_runner(layers: Sequence[Topology | sp.spmatrix], segment: int = 16):
  """Dense ``jnp.dot`` baseline with every layer's dense matrix resident and
  the same dead-row dropping: returns ``run(y0) -> final activations``."""
  weights = [_as_weights(w) for w in layers]
  n = weights[0].shape[0]
  bias = jnp.float32(BIAS[n])
  mats = jnp.asarray(np.stack([w.toarray() for w in weights]))

  # The matrices are an argument, not a closure: a captured array becomes a
  # constant inside every compiled (bucket, length) variant, one copy each.
  @functools.partial(jax.jit, static_argnames=("length",))
  def run_segment(mats, y, start, length):
    def layer(y, w):
      return jnp.clip(jnp.dot(y, w) + bias, 0.0, YMAX), None
    return jax.lax.scan(layer, y, jax.lax.dynamic_slice_in_dim(
        mats, start, length, 0))[0]

  def run(y0: np.ndarray) -> np.ndarray:
    return prune_dead_rows(lambda y, s, l: run_segment(mats, y, s, length=l),
                           y0, len(layers), segment)

  return run


def categories(y: np.ndarray | sp.spmatrix) -> np.ndarray:
  """Indices of the rows with any nonzero entry."""
  if sp.issparse(y):
    return np.flatnonzero(np.diff(y.tocsr().indptr) > 0)
  return np.flatnonzero((np.asarray(y) != 0).any(axis=1))


def distributed_categories(run: Callable[[np.ndarray], np.ndarray],
                           inputs: np.ndarray | sp.spmatrix, batch_size: int
                           ) -> tuple[np.ndarray, dict[str, Any]]:
  """Categories of all ``inputs`` computed by the processes of a JAX
  multi-process job together: process i streams only its contiguous share
  of the rows (after a warm-up on the same rows that compiles every
  shape), and the categories are gathered so that every process returns
  all of them. With one process this is :func:`streamed_categories`.

  Returns the categories and timings: ``seconds`` (the slowest process,
  i.e. the job's time), ``seconds_per_process``, ``inputs_per_process``."""
  procs, me = jax.process_count(), jax.process_index()
  n = inputs.shape[0]
  lo, hi = me * n // procs, (me + 1) * n // procs
  inputs = inputs.tocsr() if sp.issparse(inputs) else inputs
  local = inputs[lo:hi]
  streamed_categories(run, local, batch_size)  # compiles every bucket
  t0 = time.perf_counter()
  found = streamed_categories(run, local, batch_size) + lo
  seconds = time.perf_counter() - t0
  hits = np.zeros(n, np.uint8)
  hits[found] = 1
  if procs > 1:
    from jax.experimental import multihost_utils
    hits = np.asarray(multihost_utils.process_allgather(hits)).reshape(
        procs, n).max(axis=0)
    every = np.asarray(multihost_utils.process_allgather(
        np.asarray([seconds, hi - lo], np.float64))).reshape(procs, 2)
  else:
    every = np.asarray([[seconds, hi - lo]])
  return np.flatnonzero(hits), {
      "seconds": float(every[:, 0].max()),
      "seconds_per_process": [float(v) for v in every[:, 0]],
      "inputs_per_process": [int(v) for v in every[:, 1]]}


def benchmark(weights: Sequence[sp.spmatrix], inputs: np.ndarray | sp.spmatrix,
              *, network: str, truth: np.ndarray | None = None,
              block_sizes: tuple[int, ...] = (1,), impl: str = "auto",
              dense_budget_bytes: float = 2e9, segment: int = 16,
              repeats: int = 1, batch_size: int = 4096) -> list[dict[str, Any]]:
  """Times scipy, our kernel at each block size (``bsmm_bs<bs>``: a scan of
  ``bsmm`` layers; at block size 1 with the native kernels also
  ``fused_bs1``, :func:`infer_fused`) and dense ``jnp.dot`` on one
  network (best of ``repeats`` runs each) and checks every method's
  categories against ``truth`` (the official categories, 0-based), or
  against scipy's where there is no truth. Returns one row per method:
  seconds, ``edges_per_second`` (the challenge's rate: inputs x edges / s),
  categories, ``categories_match``, ``reference``.

  Every row also holds ``peak_rss_bytes``, the process's peak RSS after
  that method ran; our kernels run first, so theirs bounds our path with
  the inputs and weights loaded (scipy's row and dense's include it).

  Our kernel and dense stream the inputs ``batch_size`` at a time and are
  timed after a warm-up run on the same inputs (which compiles every
  shape); scipy needs none and runs on all inputs at once (sparse). All
  three drop finished (all-zero) inputs as they go. Weights are built
  outside the timings. Dense runs only where every layer's dense matrix
  fits in ``dense_budget_bytes``.

  In a multi-process job (``jax.process_count() > 1``) the inputs are
  split over the processes for our kernel (:func:`distributed_categories`;
  its row gives the rate of the whole job and each process's share), dense
  is not run, and scipy runs only where there is no truth to check
  against (on every process, as the reference)."""
  weights = [_as_weights(w) for w in weights]
  n, n_layers = weights[0].shape[0], len(weights)
  _check_size(n)
  edges = int(sum(w.nnz for w in weights))
  n_inputs = inputs.shape[0]
  rows: list[dict[str, Any]] = []

  def record(method, seconds, cats, note="", peak=None):
    rows.append({"network": network, "n_neurons": n, "n_layers": n_layers,
                 "inputs": n_inputs, "edges": edges, "method": method,
                 "seconds": seconds,
                 "edges_per_second": n_inputs * edges / seconds,
                 "categories": int(cats.size),
                 "categories_match": bool(np.array_equal(cats, reference)),
                 "reference": reference_name, "note": note,
                 **({} if peak is None else {"peak_rss_bytes": peak})})

  def best_of(fn):
    best, out = np.inf, None
    for _ in range(repeats):
      t0 = time.perf_counter()
      out = fn()
      best = min(best, time.perf_counter() - t0)
    return best, out

  sparse_inputs = sp.csr_matrix(inputs, dtype=np.float32)
  procs = jax.process_count()
  if procs > 1:
    if truth is None:
      reference = categories(infer_scipy(weights, sparse_inputs))
    else:
      reference = np.asarray(truth)
    reference_name = "scipy" if truth is None else "official truth"
    for bs in block_sizes:
      net = stack_network(weights, bs)
      for method, run in _our_runs(net, impl, segment):
        cats, t = distributed_categories(run, sparse_inputs, batch_size)
        record(method, t["seconds"], cats,
               f"impl={impl}, {procs} processes, batches of {batch_size}")
        rows[-1].update(processes=procs, **t)
    return rows
  # Our kernels run first, so the process's peak RSS after them (recorded
  # in their rows) bounds what our path needs with the inputs and weights
  # loaded; scipy's all-at-once reference and dense run after.
  ours = []
  for bs in block_sizes:
    net = stack_network(weights, bs)
    for method, run in _our_runs(net, impl, segment):
      note = (f"impl={impl}, block fill {net.fill:.3f}" if method.startswith("bsmm")
              else "native relu_layers: all layers in one call, dead inputs "
              "dropped inside")
      streamed_categories(run, sparse_inputs, batch_size)  # compiles every shape
      seconds, cats = best_of(lambda: streamed_categories(run, sparse_inputs, batch_size))
      ours.append((method, seconds, cats, f"{note}, batches of {batch_size}",
                   peak_rss_bytes()))
    net = run = None  # freed before the baselines run
  seconds, scipy_cats = best_of(lambda: categories(infer_scipy(weights, sparse_inputs)))
  scipy_peak = peak_rss_bytes()
  reference = scipy_cats if truth is None else np.asarray(truth)
  reference_name = "scipy" if truth is None else "official truth"
  record("scipy", seconds, scipy_cats, "scipy.sparse reference formulation",
         scipy_peak)
  for method, seconds, cats, note, peak in ours:
    record(method, seconds, cats, note, peak)
  if n_layers * n * n * 4 <= dense_budget_bytes:
    dense = dense_runner(weights, segment)
    streamed_categories(dense, sparse_inputs, batch_size)  # compile
    seconds, cats = best_of(lambda: streamed_categories(dense, sparse_inputs, batch_size))
    record("dense", seconds, cats, f"jnp.dot, batches of {batch_size}",
           peak_rss_bytes())
  return rows


def _our_runs(net: StackedNetwork, impl: str, segment: int
              ) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
  """(method, run) for each of our paths on ``net``: the ``bsmm`` scan, and
  at block size 1 with the native kernels (``impl`` auto or native_cpu)
  the fused inference."""
  runs = [(f"bsmm_bs{net.block_size}",
           lambda y: infer(net, y, impl=impl, segment=segment))]
  if impl in ("auto", "native_cpu") and fused_available(net):
    runs.append(("fused_bs1", lambda y: infer_fused(net, y)))
  return runs


def peak_rss_bytes() -> int:
  """This process's peak resident set size so far, in bytes
  (``getrusage``; Linux reports kilobytes, macOS bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == "darwin" else peak * 1024)


def kernel_failures(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """The rows of *our kernels* whose categories differ from the reference:
  these fail a run. A disagreeing dense or scipy baseline is reported in its
  row but is not a failure of ours."""
  return [r for r in rows if is_ours(r["method"]) and not r["categories_match"]]


def is_ours(method: str) -> bool:
  """Whether a benchmark row's ``method`` is one of our kernels (not a
  baseline)."""
  return method.startswith(("bsmm", "fused"))


def run_challenge(n_neurons: int, n_layers: int, images: np.ndarray, *,
                  block_sizes: tuple[int, ...] = (1,), impl: str = "auto",
                  dense_budget_bytes: float = 2e9, segment: int = 16,
                  repeats: int = 1, batch_size: int = 4096) -> list[dict[str, Any]]:
  """:func:`benchmark` on a *look-alike* network (:func:`challenge_network`)
  with MNIST ``images`` made into challenge inputs; checked against scipy."""
  weights = scipy_network(challenge_network(n_neurons, n_layers))
  return benchmark(weights, challenge_inputs(images, n_neurons),
                   network="look-alike", block_sizes=block_sizes, impl=impl,
                   dense_budget_bytes=dense_budget_bytes, segment=segment,
                   repeats=repeats, batch_size=batch_size)


# -- the official files -------------------------------------------------------

def read_tsv(path: str, *, columns: int = 3) -> np.ndarray:
  """A tab-separated numeric file (gzipped when it ends in ``.gz``) as a
  float64 array ``[lines, columns]``. Errors name the file and the problem
  (a truncated or corrupt ``.gz``, a malformed line)."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rt") as f:
      table = np.loadtxt(f, delimiter="\t", dtype=np.float64, ndmin=2)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e}); the "
                     "file is truncated or corrupt -- fetch it again") from None
  except ValueError as e:
    raise ValueError(f"{path}: not a tab-separated table of numbers ({e})") from None
  if table.size and table.shape[1] != columns:
    raise ValueError(f"{path}: expected {columns} tab-separated columns per "
                     f"line, found {table.shape[1]}")
  return table.reshape(-1, columns)


def _triples_to_csr(path: str, t: np.ndarray, shape: tuple[int, int]
                    ) -> sp.csr_matrix:
  """1-based ``row, col, value`` lines of ``path`` (already read as ``t``)
  as float32 CSR of ``shape``; bad or repeated indices name the file."""
  i, j = t[:, 0].astype(np.int64) - 1, t[:, 1].astype(np.int64) - 1
  if t.size and (i.min() < 0 or j.min() < 0 or i.max() >= shape[0]
                 or j.max() >= shape[1] or (t[:, :2] != np.round(t[:, :2])).any()):
    raise ValueError(f"{path}: indices must be integers in 1..{shape[0]} x "
                     f"1..{shape[1]}")
  m = sp.csr_matrix((t[:, 2].astype(np.float32), (i, j)), shape=shape)
  if m.nnz != len(t):
    raise ValueError(f"{path}: {len(t) - m.nnz} duplicate entries")
  m.sort_indices()
  return m


def _layer_folder(directory: str, n_neurons: int) -> str:
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory!r} is not a directory")
  sub = os.path.join(directory, f"neuron{n_neurons}")
  return sub if os.path.isdir(sub) else directory


def read_layers(directory: str, n_neurons: int, n_layers: int) -> list[sp.csr_matrix]:
  """The official layers ``n<N>-l1 .. n<N>-l<L>.tsv[.gz]`` in ``directory``
  (or its ``neuron<N>/`` subfolder) as float32 CSR ``[N, N]`` weights, rows
  = inputs."""
  _check_size(n_neurons)
  if n_layers < 1:
    raise ValueError(f"n_layers must be >= 1, got {n_layers}")
  folder = _layer_folder(directory, n_neurons)
  layers = []
  for l in range(1, n_layers + 1):
    path = find_idx(folder, f"n{n_neurons}-l{l}.tsv")
    if path is None:
      raise FileNotFoundError(
          f"layer file n{n_neurons}-l{l}.tsv[.gz] is missing from {folder!r} "
          f"(needed for {n_layers} layers)")
    layers.append(_triples_to_csr(path, read_tsv(path), (n_neurons, n_neurons)))
  return layers


def read_inputs(path: str, n_neurons: int, n_inputs: int | None = None
                ) -> sp.csr_matrix:
  """Official inputs (``image<TAB>pixel<TAB>value``, 1-based) as float32
  CSR ``[n_inputs, n_neurons]``; ``n_inputs`` defaults to the largest image
  index in the file. Entries of images beyond ``n_inputs`` are dropped."""
  t = read_tsv(path)
  if n_inputs is None:
    n_inputs = int(t[:, 0].max()) if t.size else 0
  return _triples_to_csr(path, t[t[:, 0] <= n_inputs], (n_inputs, n_neurons))


def read_categories(path: str) -> np.ndarray:
  """Official truth (one 1-based input index a line) as sorted 0-based
  int64 indices."""
  t = read_tsv(path, columns=1).ravel()
  if (t != np.round(t)).any() or (t < 1).any():
    raise ValueError(f"{path}: categories must be positive integers")
  out = np.sort(t.astype(np.int64) - 1)
  if np.unique(out).size != out.size:
    raise ValueError(f"{path}: repeated categories")
  return out


@dataclasses.dataclass(frozen=True)
class OfficialData:
  """The official files found for one network size and depth."""
  layers: list[sp.csr_matrix]
  inputs: sp.csr_matrix
  truth: np.ndarray | None  # 0-based categories among ``inputs``, or None
  paths: dict[str, str]


def read_official(directory: str, n_neurons: int = 1024, n_layers: int = 120,
                  n_inputs: int | None = None) -> OfficialData:
  """Reads the official network, inputs and (where the file for this depth
  is there) truth from ``directory``: layers as in :func:`read_layers`,
  inputs ``sparse-images-<N>*.tsv[.gz]``, truth
  ``neuron<N>-l<L>-categories.tsv[.gz]`` restricted to the inputs read.
  The truth covers the full input set, so it applies to any prefix of it."""
  folder = _layer_folder(directory, n_neurons)  # checks the directory
  images = [f for f in sorted(os.listdir(directory))
            if f.startswith(f"sparse-images-{n_neurons}")
            and (f.endswith(".tsv") or f.endswith(".tsv.gz"))]
  if not images:
    raise FileNotFoundError(f"no sparse-images-{n_neurons}*.tsv[.gz] input "
                            f"file in {directory!r}")
  layers = read_layers(directory, n_neurons, n_layers)
  inputs = read_inputs(os.path.join(directory, images[0]), n_neurons, n_inputs)
  paths = {"layers": folder, "inputs": os.path.join(directory, images[0])}
  truth_path = find_idx(directory, f"neuron{n_neurons}-l{n_layers}-categories.tsv")
  truth = None
  if truth_path is not None:
    truth = read_categories(truth_path)
    truth = truth[truth < inputs.shape[0]]
    paths["truth"] = truth_path
  return OfficialData(layers, inputs, truth, paths)


def run_official(directory: str, *, n_neurons: int = 1024, n_layers: int = 120,
                 n_inputs: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
  """:func:`benchmark` on the official network and inputs, checked against
  the official truth where its file is there (else against scipy, and the
  rows say so). ``kwargs`` go to :func:`benchmark`."""
  data = read_official(directory, n_neurons, n_layers, n_inputs)
  rows = benchmark(data.layers, data.inputs, network="official",
                   truth=data.truth, **kwargs)
  for r in rows:
    r.update({f"{k}_path": v for k, v in data.paths.items()})
  return rows
