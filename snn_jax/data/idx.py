"""Readers for raw IDX files (the MNIST family's format) and NPZ archives.

IDX: big-endian header ``0x00 0x00 <type> <ndim>`` then ``ndim`` uint32
sizes, then the data (type 0x08 = uint8). Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import zlib
import os

import numpy as np

from snn_jax.data._dataset import Dataset, seeded_split, standardize
from snn_jax.data._fingerprint import file_record, make_fingerprint

SPLITS = ("auto", "canonical", "test_only")

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
              0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally ``.gz``) into a NumPy array."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ValueError(
        f"{path} is truncated or corrupt ({type(e).__name__}: {e}); download "
        "it again or restore it from the original archive") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
    raise ValueError(f"{path} is not an IDX file (bad magic {data[:4]!r})")
  ndim = data[3]
  dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(np.int64)
  dtype = np.dtype(_IDX_TYPES[data[2]])
  expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
  if len(data) != expected:
    raise ValueError(f"{path}: header says {expected} bytes, file has {len(data)}")
  return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims)


def find_idx(data_dir: str, stem: str) -> str | None:
  """Path of ``stem`` or ``stem.gz`` in ``data_dir``, or None."""
  for name in (stem, stem + ".gz"):
    p = os.path.join(data_dir, name)
    if os.path.exists(p):
      return p
  return None


def load_idx_dir(data_dir: str, *, name: str = "mnist", seed: int = 0,
                 n_train_from_test: int = 8000,
                 normalization: str = "global", split: str = "auto") -> Dataset:
  """Loads MNIST-format IDX files from ``data_dir``.

  ``split``:
    * ``"canonical"``: the files' own train/test split
      (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``
      and the ``t10k-*`` files); an error if the training files are absent.
    * ``"test_only"``: only the test files are read, and the 10,000 test
      images are split, seeded, into ``n_train_from_test`` training and the
      rest held-out examples -- the split the first reduced reproductions
      were committed on, available whatever else the folder holds.
    * ``"auto"``: ``"canonical"`` where the training files are present,
      else ``"test_only"``.
  ``source`` says which split was used; ``fingerprint`` records the files
  read (name, size, sha256) and the split. Pixels are scaled to [0, 1] and
  standardised with training statistics.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"--data_dir {data_dir!r} is not a directory")
  tr_x = find_idx(data_dir, "train-images-idx3-ubyte")
  tr_y = find_idx(data_dir, "train-labels-idx1-ubyte")
  te_x = find_idx(data_dir, "t10k-images-idx3-ubyte")
  te_y = find_idx(data_dir, "t10k-labels-idx1-ubyte")
  if te_x is None or te_y is None:
    raise FileNotFoundError(
        f"no MNIST IDX files in {data_dir!r}: expected at least "
        "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
  has_train = tr_x is not None and tr_y is not None
  if split == "canonical" and not has_train:
    raise FileNotFoundError(
        f"split 'canonical' needs train-images-idx3-ubyte[.gz] and "
        f"train-labels-idx1-ubyte[.gz] in {data_dir!r}; only the test files "
        "are there (use split 'test_only' to split the test set)")
  canonical = has_train and split != "test_only"
  paths = [tr_x, tr_y, te_x, te_y] if canonical else [te_x, te_y]
  x_te, y_te = _read_pair(te_x, te_y)
  if canonical:
    x_tr, y_tr = _read_pair(tr_x, tr_y)
    how = "canonical"
    source = f"IDX files in {data_dir} (canonical train/test split)"
  else:
    x_tr, y_tr, x_te, y_te = seeded_split(x_te, y_te, n_train_from_test, seed)
    how = f"test_only: seeded split of the test files (seed {seed})"
    source = (f"IDX test-set files in {data_dir}: seeded {len(x_tr)}/"
              f"{len(x_te)} split of the 10,000 test images (seed {seed}); "
              + ("the training files were not read (split 'test_only')"
                 if has_train else "the training set was not available"))
  fingerprint = make_fingerprint(
      files=[file_record(p) for p in paths], normalization=normalization,
      split={"how": how, "train": len(y_tr), "test": len(y_te)})
  x_tr, x_te = standardize(x_tr, x_te, normalization)
  return Dataset(name, x_tr, y_tr, x_te, y_te, int(max(y_tr.max(), y_te.max())) + 1,
                 source=source, fingerprint=fingerprint)


def _read_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  """Images scaled to [0, 1] (float32) and int32 labels; checks they agree."""
  x = read_idx(images_path).astype(np.float32) / 255.0
  y = read_idx(labels_path).astype(np.int32)
  if len(x) != len(y):
    raise ValueError(f"{images_path} holds {len(x)} examples but "
                     f"{labels_path} holds {len(y)} labels")
  return x, y


def load_npz(path: str, *, name: str | None = None,
             normalization: str = "global") -> Dataset:
  """Loads ``x_train, y_train, x_test, y_test`` arrays from an ``.npz``."""
  with np.load(path) as f:
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
    if missing:
      raise ValueError(f"{path} lacks arrays {sorted(missing)}")
    x_tr, y_tr = f["x_train"].astype(np.float32), f["y_train"].astype(np.int32)
    x_te, y_te = f["x_test"].astype(np.float32), f["y_test"].astype(np.int32)
  if x_tr.max() > 1.5:
    x_tr, x_te = x_tr / 255.0, x_te / 255.0
  fingerprint = make_fingerprint(
      files=[file_record(path)], normalization=normalization,
      split={"how": "arrays in the file", "train": len(y_tr), "test": len(y_te)})
  x_tr, x_te = standardize(x_tr, x_te, normalization)
  return Dataset(name or os.path.basename(path), x_tr, y_tr, x_te, y_te,
                 int(max(y_tr.max(), y_te.max())) + 1, source=f"NPZ file {path}",
                 fingerprint=fingerprint)
