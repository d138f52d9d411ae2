"""In-memory dataset container and host-side batching."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from snn_jax.data._fingerprint import arrays_sha256, make_fingerprint


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test arrays on the host.

  ``x_*``: float32[N, ...features], normalised; ``y_*``: int32[N] labels in
  ``[0, num_classes)``. ``source`` says exactly where the data came from
  (reported in every result); ``fingerprint`` identifies it exactly
  (``snn_jax.data._fingerprint``): the loaders record the files read and
  the split, and a Dataset built from arrays without one gets the sha256 of
  its arrays. ``dataclasses.replace`` keeps the fingerprint it is given
  (``flattened`` relies on that); derive data with ``transformed`` (which
  records the change), or pass ``fingerprint=None`` to recompute it from
  new arrays.
  """
  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  source: str
  fingerprint: dict[str, Any] | None = None

  def __post_init__(self):
    if self.fingerprint is None:
      object.__setattr__(self, "fingerprint", make_fingerprint(
          split={"how": "arrays given", "train": len(self.y_train),
                 "test": len(self.y_test)},
          normalization="as given",
          content_sha256=arrays_sha256(self.x_train, self.y_train,
                                       self.x_test, self.y_test)))

  @property
  def input_dim(self) -> int:
    return int(np.prod(self.x_train.shape[1:]))

  def transformed(self, note: str, **arrays: np.ndarray) -> "Dataset":
    """A copy with some of ``x_train, y_train, x_test, y_test`` replaced by
    a deterministic transformation of these (e.g. permuted input features);
    the fingerprint's split description gains ``note``, so runs on the
    result are never taken for runs on this data."""
    fp = self.fingerprint
    new_fp = make_fingerprint(
        split={**fp["split"], "how": f"{fp['split']['how']}; {note}"},
        normalization=fp["normalization"], files=fp["files"] or None,
        content_sha256=fp["content_sha256"])
    return dataclasses.replace(self, fingerprint=new_fp, **arrays)

  def flattened(self) -> "Dataset":
    """The same data with every example flattened to a vector (for MLPs)."""
    return dataclasses.replace(
        self, x_train=self.x_train.reshape(len(self.x_train), -1),
        x_test=self.x_test.reshape(len(self.x_test), -1))

  def __repr__(self) -> str:
    return (f"Dataset({self.name!r}, train={self.x_train.shape}, "
            f"test={self.x_test.shape}, classes={self.num_classes}, "
            f"source={self.source!r})")


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *,
            seed: int | None = None, drop_remainder: bool = True
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields ``(x, y)`` batches; shuffled by ``np.random.default_rng(seed)``
  when a seed is given (so epoch e of a run is reproducible from
  ``seed``), in order otherwise. ``drop_remainder`` keeps shapes static."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(x)
  idx = np.random.default_rng(seed).permutation(n) if seed is not None else np.arange(n)
  stop = n - n % batch_size if drop_remainder else n
  for start in range(0, stop, batch_size):
    sel = idx[start:start + batch_size]
    yield x[sel], y[sel]


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
  return n // batch_size if drop_remainder else -(-n // batch_size)


NORMALIZATIONS = ("global", "per_feature")


def standardize(train: np.ndarray, test: np.ndarray,
                mode: str = "global") -> tuple[np.ndarray, np.ndarray]:
  """Zero mean, unit variance with the training set's statistics.

  ``"global"``: one mean and std over all features. ``"per_feature"``: each
  feature (pixel, channel) by its own mean and std, as scikit-learn's
  StandardScaler and SET's code do; a constant feature (e.g. an always-black
  border pixel) becomes exactly 0, so it carries no signal."""
  if mode == "global":
    mean = float(train.mean())
    std = float(train.std()) or 1.0
  elif mode == "per_feature":
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True)
    std = np.where(std > 0, std, 1.0)
  else:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
  return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def seeded_split(x: np.ndarray, y: np.ndarray, n_train: int, seed: int):
  """A seeded split into the first ``n_train`` and the rest."""
  if not 0 < n_train < len(x):
    raise ValueError(f"n_train must be in (0, {len(x)}), got {n_train}")
  perm = np.random.default_rng(seed).permutation(len(x))
  tr, te = perm[:n_train], perm[n_train:]
  return x[tr], y[tr], x[te], y[te]
