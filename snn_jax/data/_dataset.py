"""In-memory dataset container and host-side batching."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from snn_jax.data._fingerprint import arrays_sha256, make_fingerprint


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train, test and (optionally) validation arrays on the host.

  ``x_*``: float32[N, ...features], normalised; ``y_*``: int32[N] labels in
  ``[0, num_classes)``. ``source`` says exactly where the data came from
  (reported in every result); ``fingerprint`` identifies it exactly
  (``snn_jax.data._fingerprint``): the loaders record the files read and
  the split, and a Dataset built from arrays without one gets the sha256 of
  its arrays. ``dataclasses.replace`` keeps the fingerprint it is given
  (``flattened`` relies on that); derive data with ``transformed`` (which
  records the change), or pass ``fingerprint=None`` to recompute it from
  new arrays. ``x_val, y_val`` are None unless a validation part was held
  out of the training set (:meth:`with_validation`).
  """
  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  source: str
  fingerprint: dict[str, Any] | None = None
  x_val: np.ndarray | None = None
  y_val: np.ndarray | None = None

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

  @property
  def validation_spec(self) -> str | None:
    """The ``with_validation`` spec this data was split with, or None."""
    return self.fingerprint["split"].get("validation")

  def with_validation(self, spec: str) -> "Dataset":
    """Holds a validation part out of the training set.

    ``spec`` is ``"first:N"`` (the first N training examples, as
    TensorFlow's MNIST reader takes its 5,000 -- Alford et al. 2019) or
    ``"last:N"`` (the last N, as Keras' ``validation_split`` does -- Liu et
    al. 2020's 12,000 of Fashion-MNIST). Training then sees the rest; the
    test set is unchanged. The fingerprint's split records the spec and the
    new sizes. Normalisation statistics were computed before the split, on
    the whole training set (for ``minus_one_to_one`` on MNIST-like pixels
    that changes nothing: min 0 and max 255 either way).
    """
    if self.x_val is not None:
      raise ValueError(f"this dataset already holds a validation part "
                       f"({self.validation_spec!r})")
    n = parse_validation_spec(spec, len(self.y_train))
    if spec.startswith("first:"):
      val, train = slice(0, n), slice(n, None)
    else:
      val, train = slice(len(self.y_train) - n, None), slice(0, len(self.y_train) - n)
    fp = self.fingerprint
    new_fp = make_fingerprint(
        split={**fp["split"], "validation": spec,
               "train": len(self.y_train) - n, "validation_examples": n},
        normalization=fp["normalization"], files=fp["files"] or None,
        content_sha256=fp["content_sha256"])
    return dataclasses.replace(
        self, x_train=self.x_train[train], y_train=self.y_train[train],
        x_val=self.x_train[val], y_val=self.y_train[val], fingerprint=new_fp,
        source=f"{self.source}; validation: {spec} of the training set held out")

  def flattened(self) -> "Dataset":
    """The same data with every example flattened to a vector (for MLPs)."""
    flat = lambda a: None if a is None else a.reshape(len(a), -1)
    return dataclasses.replace(
        self, x_train=flat(self.x_train), x_test=flat(self.x_test),
        x_val=flat(self.x_val))

  def __repr__(self) -> str:
    val = "" if self.x_val is None else f", validation={self.x_val.shape}"
    return (f"Dataset({self.name!r}, train={self.x_train.shape}, "
            f"test={self.x_test.shape}{val}, classes={self.num_classes}, "
            f"source={self.source!r})")


def batch_indices(n: int, batch_size: int, *, seed: int | None = None,
                  drop_remainder: bool = True) -> Iterator[np.ndarray]:
  """Yields the example indices of each batch of :func:`batches` (int64
  arrays of ``batch_size``, the last one shorter without
  ``drop_remainder``): a permutation by ``np.random.default_rng(seed)``
  when a seed is given, in order otherwise. A loop holding the examples
  on the device gathers each batch there from these."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  idx = np.random.default_rng(seed).permutation(n) if seed is not None else np.arange(n)
  stop = n - n % batch_size if drop_remainder else n
  for start in range(0, stop, batch_size):
    yield idx[start:start + batch_size]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *,
            seed: int | None = None, drop_remainder: bool = True
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields ``(x, y)`` batches; shuffled by ``np.random.default_rng(seed)``
  when a seed is given (so epoch e of a run is reproducible from
  ``seed``), in order otherwise. ``drop_remainder`` keeps shapes static.
  The batches are those of :func:`batch_indices`."""
  for sel in batch_indices(len(x), batch_size, seed=seed,
                           drop_remainder=drop_remainder):
    yield x[sel], y[sel]


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
  return n // batch_size if drop_remainder else -(-n // batch_size)


NORMALIZATIONS = ("global", "per_feature", "minus_one_to_one")


def parse_validation_spec(spec: str, n_train: int | None = None) -> int:
  """The size N of a ``"first:N"`` / ``"last:N"`` validation spec
  (:meth:`Dataset.with_validation`); checks it against ``n_train``."""
  how, _, count = str(spec).partition(":")
  if how not in ("first", "last") or not count.isdigit() or int(count) < 1:
    raise ValueError(f"validation split must be 'first:N' or 'last:N' with N "
                     f"a positive integer (e.g. 'first:5000'), got {spec!r}")
  n = int(count)
  if n_train is not None and n >= n_train:
    raise ValueError(f"validation split {spec!r} leaves no training examples "
                     f"(the training set has {n_train})")
  return n


def standardize(train: np.ndarray, test: np.ndarray,
                mode: str = "global") -> tuple[np.ndarray, np.ndarray]:
  """Zero mean, unit variance with the training set's statistics.

  ``"global"``: one mean and std over all features. ``"per_feature"``: each
  feature (pixel, channel) by its own mean and std, as scikit-learn's
  StandardScaler and SET's code do; a constant feature (e.g. an always-black
  border pixel) becomes exactly 0, so it carries no signal.
  ``"minus_one_to_one"``: no standardisation; the training set's range
  [min, max] maps linearly onto [-1, 1] (pixels in [-1, 1], as Alford et
  al. 2019 feed MNIST)."""
  if mode == "minus_one_to_one":
    lo, hi = float(train.min()), float(train.max())
    scale = 2.0 / (hi - lo) if hi > lo else 1.0
    return (((train - lo) * scale - 1.0).astype(np.float32),
            ((test - lo) * scale - 1.0).astype(np.float32))
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
