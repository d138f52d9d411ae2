"""The embedded default dataset: scikit-learn's bundled 8x8 digits.

1,797 images of handwritten digits (UCI ML hand-written digits, bundled
inside scikit-learn's wheel), so it loads with no network on a fresh machine.
A seeded 1,437 / 360 train / test split; pixels 0..16 standardised.
"""

from __future__ import annotations

import numpy as np

from snn_jax.data._dataset import Dataset, seeded_split, standardize
from snn_jax.data._fingerprint import arrays_sha256, make_fingerprint


def load_digits(seed: int = 0, normalization: str = "global") -> Dataset:
  from sklearn.datasets import load_digits as _sk_digits

  d = _sk_digits()
  x = d.images.astype(np.float32)  # [1797, 8, 8], 0..16
  y = d.target.astype(np.int32)
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
