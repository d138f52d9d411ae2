"""The embedded default dataset: scikit-learn's bundled 8x8 digits.

1,797 images of handwritten digits (UCI ML hand-written digits, bundled
inside scikit-learn's wheel), so it loads with no network on a fresh machine.
A seeded 1,437 / 360 train / test split; pixels 0..16 standardised.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from snn_jax.data._dataset import Dataset, seeded_split, standardize
from snn_jax.data._fingerprint import arrays_sha256, make_fingerprint


def _bundled_digits_file() -> str | None:
  """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing
  scikit-learn (its import takes 1.7 s, longer than a tiny training run)."""
  spec = importlib.util.find_spec("sklearn")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      return path
  return None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """images float32 [1797, 8, 8] (0..16) and labels int32 [1797]: the
  arrays ``sklearn.datasets.load_digits`` returns, read from its file as it
  does (one row per image, 64 pixels then the label)."""
  path = _bundled_digits_file()
  if path is None:  # a layout we do not know: the public API says why
    from sklearn.datasets import load_digits as sk_load_digits
    d = sk_load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int32)
  rows = np.loadtxt(path, delimiter=",")
  return (rows[:, :-1].reshape(-1, 8, 8).astype(np.float32),
          rows[:, -1].astype(np.int32))


def load_digits(seed: int = 0, normalization: str = "global") -> Dataset:
  x, y = _digits_arrays()  # [1797, 8, 8] 0..16, [1797]
  x_tr, y_tr, x_te, y_te = seeded_split(x, y, 1437, seed)
  fingerprint = make_fingerprint(
      content_sha256=arrays_sha256(x, y), normalization=normalization,
      split={"how": f"seeded split (seed {seed})", "train": len(y_tr),
             "test": len(y_te)})
  x_tr, x_te = standardize(x_tr, x_te, normalization)
  return Dataset("digits", x_tr, y_tr, x_te, y_te, 10,
                 source=f"scikit-learn bundled digits (1,797 8x8 images), "
                        f"seeded 1437/360 split (seed {seed})",
                 fingerprint=fingerprint)
