"""Datasets: embedded digits, IDX/NPZ readers, TFDS path, batching."""

import gzip
import os

import numpy as np
import pytest

from snn_jax import data
from tests.conftest import SHARED_MNIST


def test_digits_embedded():
  ds = data.load("digits", seed=1)
  assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
  assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
  assert abs(ds.x_train.mean()) < 1e-3 and abs(ds.x_train.std() - 1) < 1e-3
  again = data.load("digits", seed=1)
  np.testing.assert_array_equal(again.y_test, ds.y_test)
  assert not np.array_equal(data.load("digits", seed=2).y_test, ds.y_test)


def test_batches_seeded_and_static(rng):
  x = rng.standard_normal((103, 4)).astype(np.float32)
  y = np.arange(103)
  a = list(data.batches(x, y, 10, seed=5))
  b = list(data.batches(x, y, 10, seed=5))
  assert len(a) == 10 and all(xb.shape == (10, 4) for xb, _ in a)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(ya, yb)
  seen = np.concatenate([yb for _, yb in a])
  assert len(np.unique(seen)) == 100
  full = list(data.batches(x, y, 10, drop_remainder=False))
  assert len(full) == 11 and full[-1][0].shape == (3, 4)
  with pytest.raises(ValueError, match="batch_size"):
    list(data.batches(x, y, 0))
  # batch_indices names the same batches (the loop gathers them on device).
  for drop in (True, False):
    idx = list(data.batch_indices(103, 10, seed=5, drop_remainder=drop))
    got = list(data.batches(x, y, 10, seed=5, drop_remainder=drop))
    assert len(idx) == len(got) == (10 if drop else 11)
    for sel, (xb, yb) in zip(idx, got):
      np.testing.assert_array_equal(x[sel], xb)
      np.testing.assert_array_equal(y[sel], yb)
  with pytest.raises(ValueError, match="batch_size"):
    list(data.batch_indices(103, 0))


def _write_idx(path, arr, type_code=0x08):
  header = bytes([0, 0, type_code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
  payload = header + arr.astype(">u1" if type_code == 0x08 else ">f4").tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def test_idx_round_trip_and_dir_loading(tmp_path, rng):
  imgs = rng.integers(0, 256, size=(50, 28, 28)).astype(np.uint8)
  labels = rng.integers(0, 10, size=50).astype(np.uint8)
  _write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs)
  _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), labels)
  np.testing.assert_array_equal(data.read_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz")), imgs)
  ds = data.load_idx_dir(str(tmp_path), n_train_from_test=40, seed=0)
  assert ds.x_train.shape == (40, 28, 28) and ds.x_test.shape == (10, 28, 28)
  assert "training set was not available" in ds.source
  bad = tmp_path / "bad"
  bad.write_bytes(b"\x01\x02\x03\x04rest")
  with pytest.raises(ValueError, match="not an IDX file"):
    data.read_idx(str(bad))
  trunc = tmp_path / "trunc"
  _write_idx(str(trunc), imgs[:2])
  trunc.write_bytes(trunc.read_bytes()[:-5])
  with pytest.raises(ValueError, match="header says"):
    data.read_idx(str(trunc))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="no MNIST IDX files"):
    data.load_idx_dir(str(empty))
  with pytest.raises(FileNotFoundError, match="not a directory"):
    data.load_idx_dir(str(tmp_path / "missing"))


def test_npz(tmp_path, rng):
  p = tmp_path / "d.npz"
  np.savez(p, x_train=rng.integers(0, 256, (30, 5)), y_train=rng.integers(0, 3, 30),
           x_test=rng.integers(0, 256, (10, 5)), y_test=rng.integers(0, 3, 10))
  ds = data.load("mnist", data_dir=str(p))
  assert ds.x_train.shape == (30, 5) and ds.x_train.dtype == np.float32
  assert ds.fingerprint["files"] == [data.file_record(str(p))]


MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
needs_shared_mnist = pytest.mark.skipif(
    not os.path.isdir(SHARED_MNIST),
    reason="../shared/datasets/mnist is not present (a user's clone)")


@needs_shared_mnist
def test_shared_mnist_test_only_split_holds_for_either_content():
  ds = data.load("mnist", data_dir=SHARED_MNIST, seed=0, split="test_only")
  assert ds.x_train.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
  counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
  np.testing.assert_array_equal(counts, MNIST_TEST_COUNTS)
  assert "seeded 8000/2000" in ds.source
  assert [f["name"] for f in ds.fingerprint["files"]] == [
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@needs_shared_mnist
@pytest.mark.slow
def test_shared_mnist_auto_uses_the_training_files_when_present():
  has_train = data.find_idx(SHARED_MNIST, "train-images-idx3-ubyte") is not None
  ds = data.load("mnist", data_dir=SHARED_MNIST, seed=0)
  if not has_train:  # a test-set-only folder: auto splits the test set
    assert ds.x_train.shape == (8000, 784)
    with pytest.raises(FileNotFoundError, match="only the test files"):
      data.load("mnist", data_dir=SHARED_MNIST, split="canonical")
    return
  assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
  np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10),
                                MNIST_TRAIN_COUNTS)
  np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10),
                                MNIST_TEST_COUNTS)
  assert "canonical" in ds.source and ds.fingerprint["split"]["train"] == 60000
  assert data.load("mnist", data_dir=SHARED_MNIST, split="canonical"
                   ).fingerprint == ds.fingerprint


def test_idx_splits_and_fingerprints(tmp_path, rng):
  imgs = rng.integers(0, 256, size=(60, 28, 28)).astype(np.uint8)
  labels = rng.integers(0, 10, size=60).astype(np.uint8)
  _write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs[:30])
  _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), labels[:30])
  only_test = data.load_idx_dir(str(tmp_path), n_train_from_test=20)
  with pytest.raises(FileNotFoundError, match="split 'canonical' needs"):
    data.load_idx_dir(str(tmp_path), split="canonical")
  _write_idx(str(tmp_path / "train-images-idx3-ubyte"), imgs[30:])
  _write_idx(str(tmp_path / "train-labels-idx1-ubyte"), labels[30:])
  auto = data.load_idx_dir(str(tmp_path))
  canonical = data.load_idx_dir(str(tmp_path), split="canonical")
  test_only = data.load_idx_dir(str(tmp_path), n_train_from_test=20,
                                split="test_only")
  assert auto.x_train.shape == (30, 28, 28)
  np.testing.assert_array_equal(auto.y_train, labels[30:])
  assert auto.fingerprint == canonical.fingerprint
  assert len(auto.fingerprint["files"]) == 4
  # test_only reads the same two files as before the training files came,
  # so its fingerprint (and data) are unchanged by their arrival.
  assert test_only.fingerprint == only_test.fingerprint
  np.testing.assert_array_equal(test_only.y_test, only_test.y_test)
  assert "not read" in test_only.source
  assert test_only.fingerprint["id"] != auto.fingerprint["id"]
  # A changed file changes the id, and the difference names the file.
  _write_idx(str(tmp_path / "train-labels-idx1-ubyte"), (labels[30:] + 1) % 10)
  changed = data.load_idx_dir(str(tmp_path))
  assert changed.fingerprint["id"] != auto.fingerprint["id"]
  diff = data.describe_difference(auto.fingerprint, changed.fingerprint)
  assert "train-labels-idx1-ubyte changed" in diff and "images" not in diff
  with pytest.raises(ValueError, match="split must be one of"):
    data.load_idx_dir(str(tmp_path), split="train")
  with pytest.raises(ValueError, match="applies to IDX directories"):
    data.load("digits", split="test_only")


def test_fingerprint_of_arrays_and_loaders(rng):
  x = rng.standard_normal((20, 3)).astype(np.float32)
  y = rng.integers(0, 2, 20).astype(np.int32)
  a = data.Dataset("toy", x[:15], y[:15], x[15:], y[15:], 2, source="arrays")
  b = data.Dataset("toy", x[:15].copy(), y[:15], x[15:], y[15:], 2, source="x")
  assert a.fingerprint["id"] == b.fingerprint["id"]
  assert a.fingerprint["split"] == {"how": "arrays given", "train": 15, "test": 5}
  x2 = x.copy()
  x2[0, 0] += 1.0
  c = data.Dataset("toy", x2[:15], y[:15], x2[15:], y[15:], 2, source="arrays")
  assert c.fingerprint["id"] != a.fingerprint["id"]
  assert a.flattened().fingerprint == a.fingerprint
  perm = a.transformed("features reversed", x_train=x[:15, ::-1],
                       x_test=x[15:, ::-1])
  assert perm.fingerprint["id"] != a.fingerprint["id"]
  assert perm.fingerprint["split"]["how"] == "arrays given; features reversed"
  np.testing.assert_array_equal(perm.x_train, x[:15, ::-1])
  d1, d2 = data.load("digits", seed=1), data.load("digits", seed=2)
  assert d1.fingerprint["id"] == data.load("digits", seed=1).fingerprint["id"]
  assert d1.fingerprint["id"] != d2.fingerprint["id"]
  assert "seed 1" in d1.fingerprint["split"]["how"]
  assert data.load("digits", seed=1, normalization="per_feature"
                   ).fingerprint["id"] != d1.fingerprint["id"]
  with pytest.raises(ValueError, match="needs files or a content_sha256"):
    data.make_fingerprint(split={}, normalization="global")


def test_unknown_dataset_and_missing_tfds(monkeypatch):
  with pytest.raises(ValueError, match="known: digits"):
    data.load("imagenet")
  import builtins
  real_import = builtins.__import__

  def fake_import(name, *a, **k):
    if name == "tensorflow_datasets":
      raise ImportError("no tfds")
    return real_import(name, *a, **k)

  monkeypatch.setattr(builtins, "__import__", fake_import)
  with pytest.raises(data.DatasetUnavailableError, match="pip install"):
    data.load("mnist")


def test_per_feature_standardisation_zeroes_constant_features(rng):
  from snn_jax.data import standardize
  train = rng.normal(3.0, 2.0, size=(200, 6)).astype(np.float32)
  train[:, 2] = 7.0  # a constant feature (an always-black pixel)
  test = rng.normal(3.0, 2.0, size=(50, 6)).astype(np.float32)
  test[:, 2] = 7.0
  tr, te = standardize(train, test, "per_feature")
  assert not tr[:, 2].any() and not te[:, 2].any()
  keep = [0, 1, 3, 4, 5]
  np.testing.assert_allclose(tr[:, keep].mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(tr[:, keep].std(axis=0), 1, atol=1e-4)
  g_tr, _ = standardize(train, test, "global")
  assert np.unique(g_tr[:, 2]).size == 1 and g_tr[0, 2] != 0  # constant, not 0
  with pytest.raises(ValueError, match="normalization"):
    standardize(train, test, "minmax")


def test_load_per_feature_digits():
  from snn_jax import data
  ds = data.load("digits", normalization="per_feature")
  const = ds.x_train.std(axis=0) == 0
  assert const.any() and not ds.x_train[:, const].any()
  with pytest.raises(ValueError, match="normalization"):
    data.load("digits", normalization="l2")
