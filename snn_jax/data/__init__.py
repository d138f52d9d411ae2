"""Datasets: the embedded default (digits), IDX/NPZ files, and TFDS.

``load(name, ...)`` is the one entry point the training loop uses.
"""

from __future__ import annotations

from snn_jax.data._dataset import (NORMALIZATIONS, Dataset, batch_indices,
                                   batches,
                                   num_batches, parse_validation_spec,
                                   seeded_split, standardize)
from snn_jax.data.embedded import load_digits
from snn_jax.data._fingerprint import (arrays_sha256, describe_difference,
                                       file_record, make_fingerprint)
from snn_jax.data.idx import SPLITS, find_idx, load_idx_dir, load_npz, read_idx
from snn_jax.data.tfds import TFDS_NAMES, DatasetUnavailableError, load_tfds
from snn_jax.data._config import DataConfig

DATASETS = ("digits",) + TFDS_NAMES


def reads_idx_dir(name: str, data_dir: str | None) -> bool:
  """Whether :func:`load` reads ``name`` from an IDX folder (the only
  source that has a ``split`` choice): a ``data_dir`` that is not an
  ``.npz`` file, for any dataset but the embedded digits."""
  return name != "digits" and data_dir is not None and not data_dir.endswith(".npz")


def load(name: str, *, data_dir: str | None = None,
         tfds_data_dir: str | None = None, manual_dir: str | None = None,
         download: bool = False, seed: int = 0, flatten: bool = True,
         normalization: str = "global", split: str = "auto") -> Dataset:
  """Loads a dataset by name.

  ``digits`` is embedded (no network). For ``mnist``, ``fashion_mnist`` and
  ``cifar10``: with ``data_dir``, IDX files (or an ``.npz`` path) are read
  directly; otherwise TFDS is used (``tfds_data_dir``, ``manual_dir``,
  ``download``). ``normalization``: ``"global"`` or ``"per_feature"``
  standardisation with training-set statistics (``standardize``).
  ``split`` (IDX directories only; see ``load_idx_dir``): ``"auto"``,
  ``"canonical"`` or ``"test_only"``; elsewhere only ``"auto"`` is valid.
  The result's ``fingerprint`` records exactly which data was read.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got "
                     f"{normalization!r}")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if split != "auto" and not reads_idx_dir(name, data_dir):
    raise ValueError(f"split {split!r} applies to IDX directories (--data_dir); "
                     f"{name} {'from ' + data_dir if data_dir else ''} has its "
                     "own split: leave split at 'auto'")
  if name == "digits":
    ds = load_digits(seed, normalization)
  elif reads_idx_dir(name, data_dir):
    ds = load_idx_dir(data_dir, name=name, seed=seed,
                      normalization=normalization, split=split)
  elif data_dir is not None:
    ds = load_npz(data_dir, name=name, normalization=normalization)
  else:
    ds = load_tfds(name, data_dir=tfds_data_dir, manual_dir=manual_dir,
                   download=download, normalization=normalization)
  return ds.flattened() if flatten else ds


__all__ = ["DATASETS", "DataConfig", "NORMALIZATIONS", "SPLITS", "Dataset", "standardize",
           "DatasetUnavailableError", "TFDS_NAMES", "arrays_sha256", "batch_indices",
           "batches",
           "describe_difference", "file_record", "find_idx", "load",
           "load_digits", "load_idx_dir", "reads_idx_dir", "load_npz", "load_tfds",
           "make_fingerprint", "num_batches", "parse_validation_spec", "read_idx", "seeded_split"]
