"""Sparse DNN Graph Challenge: networks, inputs, and our kernels against the
scipy reference."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from snn_jax import graph_challenge as gc
from snn_jax.kernels import native_cpu
from tests.conftest import SHARED_MNIST

SHARED_GC = os.path.join(os.path.dirname(SHARED_MNIST), "graph_challenge")
needs_official = pytest.mark.skipif(
    not os.path.isdir(SHARED_GC),
    reason="../shared/datasets/graph_challenge is absent (a user's clone)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("n", [1024, 4096, 65536])
@pytest.mark.slow
def test_network_has_32_distinct_connections_per_neuron(n):
  layers = gc.challenge_network(n, 4)
  for t in layers:
    assert t.nnz == n * 32  # Topology dedupes: all 32 neighbours distinct
    assert (t.fan_in() == 32).all() and (t.fan_out() == 32).all()
  assert len({t.params["place"] for t in layers}) == min(4, len(gc.place_values(n)))


def test_bad_sizes():
  with pytest.raises(ValueError, match="challenge sizes"):
    gc.challenge_network(1000, 3)
  with pytest.raises(ValueError, match="n_layers"):
    gc.challenge_network(1024, 0)


def test_inputs_are_binary_resized_images(rng):
  imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
  y = gc.challenge_inputs(imgs, 1024)
  assert sp.issparse(y) and y.shape == (5, 1024) and y.dtype == np.float32
  dense = y.toarray()
  assert set(np.unique(dense)) <= {0.0, 1.0} and 0 < dense.mean() < 1
  # Chunked resizing gives the same inputs as one pass.
  np.testing.assert_array_equal(gc.challenge_inputs(imgs, 1024, chunk=2).toarray(),
                                dense)


@pytest.mark.parametrize("bs", [1, 8, 32])
def test_blocks_hold_exactly_the_edges(bs):
  t = gc.challenge_network(1024, 2)[1]
  br, bc, v = gc.to_blocks(t, bs)
  dense = np.zeros((1024, 1024), np.float32)
  for r, c, blk in zip(br, bc, v):
    dense[r * bs:(r + 1) * bs, c * bs:(c + 1) * bs] = blk
  expected = np.zeros_like(dense)
  expected[t.rows, t.cols] = gc.WEIGHT
  np.testing.assert_array_equal(dense, expected)


@pytest.mark.parametrize("bs", [1, 32])
def test_kernels_match_scipy(rng, bs):
  layers = gc.challenge_network(1024, 6)
  # Dense blobs survive the negative bias for a few layers.
  y0 = (rng.uniform(size=(64, 1024)) < 0.6).astype(np.float32)
  ref = gc.infer_scipy(gc.scipy_network(layers), y0).toarray()
  assert ref.any()  # a non-trivial comparison
  net = gc.stack_network(layers, bs)
  ours = gc.infer(net, y0, segment=4)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(gc.categories(ours), gc.categories(ref))
  if bs == 1 and gc.fused_available(net):
    fused = gc.infer_fused(net, y0)  # same bits as the bsmm scan
    np.testing.assert_array_equal(fused.view(np.int32), ours.view(np.int32))
  elif bs != 1:
    with pytest.raises(ValueError, match="block size 1"):
      gc.infer_fused(net, y0)
  dense = gc.dense_runner(layers, 4)(y0)
  np.testing.assert_allclose(dense, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_run_challenge_rows(rng):
  imgs = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
  rows = gc.run_challenge(1024, 3, imgs, block_sizes=(1,), segment=2,
                          batch_size=16)  # three batches, the last partial
  fused = ["fused_bs1"] if native_cpu.AVAILABLE else []
  assert [r["method"] for r in rows] == ["scipy", "bsmm_bs1", *fused, "dense"]
  assert all(r["categories_match"] for r in rows)
  assert all(r["edges_per_second"] > 0 for r in rows)
  assert {(r["network"], r["reference"]) for r in rows} == {("look-alike", "scipy")}
  assert rows[0]["edges"] == 1024 * 32 * 3
  # Peak RSS after each method: ours ran first, so its peak is no higher
  # than the peaks recorded after scipy and dense.
  peaks = {r["method"]: r["peak_rss_bytes"] for r in rows}
  assert 0 < peaks["bsmm_bs1"] <= peaks["scipy"] <= peaks["dense"]
  assert peaks["dense"] <= gc.peak_rss_bytes()


def test_streamed_categories_equal_one_pass(rng):
  layers = gc.scipy_network(gc.challenge_network(1024, 4))
  # Row densities 0..0.3 around the survival threshold (2 q > 0.3).
  y0 = sp.csr_matrix((rng.uniform(size=(50, 1024)) < rng.uniform(
      0.0, 0.3, size=(50, 1))).astype(np.float32))
  whole = gc.categories(gc.infer_scipy(layers, y0))
  assert 0 < whole.size < 50  # some inputs survive, some do not
  net = gc.stack_network(layers, 1)
  got = gc.streamed_categories(lambda y: gc.infer(net, y, segment=2), y0, 7)
  np.testing.assert_array_equal(got, whole)
  with pytest.raises(ValueError, match="batch_size"):
    gc.streamed_categories(lambda y: y, y0, 0)


def test_weighted_layers_keep_their_values(rng):
  w = sp.random(1024, 1024, density=0.01, format="csr", dtype=np.float32,
                random_state=np.random.RandomState(rng.integers(1 << 31)))
  for bs in (1, 16):
    br, bc, v = gc.to_blocks(w, bs)
    dense = np.zeros((1024, 1024), np.float32)
    for r, c, blk in zip(br, bc, v):
      dense[r * bs:(r + 1) * bs, c * bs:(c + 1) * bs] = blk
    np.testing.assert_array_equal(dense, w.toarray())


def test_kernel_failures_only_count_our_kernels():
  rows = [{"method": "scipy", "categories_match": False},
          {"method": "dense", "categories_match": False},
          {"method": "bsmm_bs1", "categories_match": True},
          {"method": "bsmm_bs32", "categories_match": False},
          {"method": "fused_bs1", "categories_match": False}]
  assert [r["method"] for r in gc.kernel_failures(rows)] == ["bsmm_bs32",
                                                              "fused_bs1"]


def _write_tsv(path, lines):
  text = "".join("\t".join(str(v) for v in line) + "\n" for line in lines)
  if str(path).endswith(".gz"):
    with gzip.open(path, "wt") as f:
      f.write(text)
  else:
    path.write_text(text)


def _official_folder(tmp_path, rng, n=1024, n_layers=2, gz=True):
  """A tiny network in the official layout, with random layers."""
  folder = tmp_path / f"neuron{n}"
  folder.mkdir()
  mats = []
  for l in range(1, n_layers + 1):
    r = rng.integers(0, n, 4 * n)
    c = rng.integers(0, n, 4 * n)
    m = sp.csr_matrix((np.ones(r.size, np.float32), (r, c)), shape=(n, n))
    m.sum_duplicates()
    m.data[:] = rng.choice([0.5, 1.0], m.nnz)
    coo = m.tocoo()
    _write_tsv(folder / f"n{n}-l{l}.tsv{'.gz' if gz else ''}",
               zip(coo.row + 1, coo.col + 1, coo.data))
    mats.append(m)
  img = rng.integers(1, 9, 1500), rng.integers(1, n + 1, 1500)
  _write_tsv(tmp_path / f"sparse-images-{n}.tsv.gz",
             sorted(set(zip(img[0].tolist(), img[1].tolist(), [1] * 1500))))
  return mats


@pytest.mark.parametrize("gz", [True, False])
def test_official_readers_round_trip(tmp_path, rng, gz):
  mats = _official_folder(tmp_path, rng, gz=gz)
  got = gc.read_layers(str(tmp_path), 1024, 2)
  for a, b in zip(got, mats):
    assert a.dtype == np.float32 and a.shape == (1024, 1024)
    np.testing.assert_array_equal(a.toarray(), b.toarray())
  inputs = gc.read_inputs(str(tmp_path / "sparse-images-1024.tsv.gz"), 1024)
  assert inputs.shape[1] == 1024 and set(inputs.data) == {1.0}
  assert gc.read_inputs(str(tmp_path / "sparse-images-1024.tsv.gz"), 1024,
                        n_inputs=2).shape[0] == 2
  _write_tsv(tmp_path / "neuron1024-l2-categories.tsv", [[5], [2]])
  np.testing.assert_array_equal(
      gc.read_categories(str(tmp_path / "neuron1024-l2-categories.tsv")), [1, 4])
  data = gc.read_official(str(tmp_path), 1024, 2, n_inputs=3)
  np.testing.assert_array_equal(data.truth, [1])  # only truth among 3 inputs
  assert data.inputs.shape == (3, 1024) and "truth" in data.paths


def test_official_reader_errors(tmp_path, rng):
  _official_folder(tmp_path, rng)
  with pytest.raises(FileNotFoundError, match="n1024-l3.tsv.*missing"):
    gc.read_layers(str(tmp_path), 1024, 3)
  with pytest.raises(FileNotFoundError, match="not a directory"):
    gc.read_layers(str(tmp_path / "nowhere"), 1024, 1)
  layer = tmp_path / "neuron1024" / "n1024-l2.tsv.gz"
  layer.write_bytes(layer.read_bytes()[:-20])  # truncated download
  with pytest.raises(ValueError, match="n1024-l2.tsv.gz: cannot be read.*truncated"):
    gc.read_layers(str(tmp_path), 1024, 2)
  bad = tmp_path / "bad.tsv"
  _write_tsv(bad, [[1, 2000, 0.5]])
  with pytest.raises(ValueError, match="bad.tsv: indices must be"):
    gc.read_inputs(str(bad), 1024)
  _write_tsv(bad, [[1, 2], [3, 4]])
  with pytest.raises(ValueError, match="expected 3 tab-separated columns"):
    gc.read_tsv(str(bad))
  bad.write_text("1\tx\t3\n")
  with pytest.raises(ValueError, match="not a tab-separated table"):
    gc.read_tsv(str(bad))
  (tmp_path / "sparse-images-1024.tsv.gz").unlink()
  with pytest.raises(FileNotFoundError, match="no sparse-images-1024"):
    gc.read_official(str(tmp_path), 1024, 2)


@needs_official
@pytest.mark.slow
def test_official_network_reproduces_the_official_categories():
  """The official 1,024-neuron, 120-layer network on the first 1,200
  official inputs: our kernel's categories equal the official truth."""
  data = gc.read_official(SHARED_GC, 1024, 120)
  assert data.inputs.shape == (1200, 1024) and data.inputs.nnz == 122713
  assert all(w.nnz == 32768 for w in data.layers)
  assert data.truth.size == 19 and data.truth[0] == 286  # input 287, 1-based
  net = gc.stack_network(data.layers, 1)
  ours = gc.streamed_categories(lambda y: gc.infer(net, y), data.inputs, 4096)
  np.testing.assert_array_equal(ours, data.truth)
  if gc.fused_available(net):
    fused = gc.streamed_categories(lambda y: gc.infer_fused(net, y),
                                   data.inputs, 500)  # three batches
    np.testing.assert_array_equal(fused, data.truth)
  ref = gc.categories(gc.infer_scipy(data.layers, data.inputs))
  np.testing.assert_array_equal(ref, data.truth)


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/datasets/mnist is absent (a user's clone)")
@pytest.mark.slow
def test_binary_on_real_mnist(tmp_path):
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "graph_challenge.py"),
       f"--data_dir={SHARED_MNIST}", "--sizes=1024", "--layers=8",
       "--inputs=300", "--block_sizes=1,32", f"--output_dir={tmp_path}"],
      capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "bsmm_bs32" in r.stdout and "False" not in r.stdout
  assert "look-alike" in r.stdout
  assert any(p.suffix == ".csv" for p in tmp_path.iterdir())


@pytest.mark.slow
def test_binary_fails_only_when_our_kernel_disagrees(tmp_path, rng):
  """A truth file that the network cannot produce: our kernel disagrees,
  and the run exits 1 naming it; with a right truth it exits 0."""
  mats = _official_folder(tmp_path, rng)
  inputs = gc.read_inputs(str(tmp_path / "sparse-images-1024.tsv.gz"), 1024)
  right = gc.categories(gc.infer_scipy(mats, inputs)) + 1
  assert 0 < right.size  # the check has something to check
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "graph_challenge.py"),
         f"--official_dir={tmp_path}", "--sizes=1024", "--layers=2",
         f"--output_dir={tmp_path / 'out'}"]
  truth = tmp_path / "neuron1024-l2-categories.tsv"
  _write_tsv(truth, [[i] for i in right])
  ok = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "official truth" in ok.stdout
  _write_tsv(truth, [[i] for i in sorted(set(right) ^ {1})])  # input 1 flipped
  bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert bad.returncode == 1
  assert "our kernel's categories differ" in bad.stderr + bad.stdout
  usage = subprocess.run(cmd[:3] + [f"--data_dir={tmp_path}"],  # both
                         capture_output=True, text=True, timeout=600)
  assert usage.returncode != 0 and "exactly one of" in usage.stderr
