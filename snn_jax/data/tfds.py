"""tensorflow-datasets loading (mnist, fashion_mnist, cifar10).

TensorFlow and TFDS are imported lazily here only (``pip install -e
'.[data]'`` in a checkout). Offline use: ``data_dir`` pointing at a prepared TFDS
directory, or ``manual_dir`` holding the canonical archives, which TFDS
finds by name through ``DownloadConfig(manual_dir=...)``. A dataset that is
neither prepared nor downloadable raises ``DatasetUnavailableError`` with
what to do -- no silent hang: downloads are disabled unless asked for.
"""

from __future__ import annotations

import numpy as np

from snn_jax.data._dataset import Dataset, standardize
from snn_jax.data._fingerprint import arrays_sha256, make_fingerprint

TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10")


class DatasetUnavailableError(RuntimeError):
  """The dataset is not prepared locally and could not be fetched."""


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DatasetUnavailableError(
        "tensorflow-datasets is not installed: pip install -e '.[data]' in "
        "the snn_jax checkout "
        "(or use --dataset=digits, the embedded default, or --data_dir with "
        "IDX/NPZ files)") from e
  return tfds


def load_tfds(name: str, *, data_dir: str | None = None,
              manual_dir: str | None = None, download: bool = False,
              normalization: str = "global") -> Dataset:
  """Loads a TFDS dataset's train and test splits into memory.

  Args:
    name: one of ``mnist``, ``fashion_mnist``, ``cifar10``.
    data_dir: TFDS data directory (``--tfds_data_dir``).
    manual_dir: directory with the canonical archives (prepared offline).
    download: allow TFDS to download (needs network).
  """
  if name not in TFDS_NAMES:
    raise ValueError(f"unknown TFDS dataset {name!r}; known: {', '.join(TFDS_NAMES)}")
  tfds = _import_tfds()
  builder = tfds.builder(name, data_dir=data_dir)
  if download or manual_dir:
    try:
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir, try_download_gcs=False))
    except Exception as e:  # TFDS raises many types; say what to do.
      raise DatasetUnavailableError(
          f"could not prepare TFDS dataset {name!r}: {type(e).__name__}: {e}. "
          "Check the archives in --tfds_manual_dir or the network.") from e
  arrays = {}
  try:
    for split in ("train", "test"):
      # Finite batches: batch_size=-1 crashes TF 2.21 on generated datasets.
      parts = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=4096)))
      arrays[split] = (np.concatenate([p["image"] for p in parts]),
                       np.concatenate([p["label"] for p in parts]).astype(np.int32))
  except Exception as e:
    if builder.is_prepared():
      raise
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not prepared in "
        f"{data_dir or '~/tensorflow_datasets'}. Either prepare it once with "
        f"network access (--tfds_download), point --tfds_data_dir at a "
        f"prepared copy, or put the canonical archives in --tfds_manual_dir."
    ) from e
  info = builder.info
  fingerprint = make_fingerprint(
      content_sha256=arrays_sha256(*arrays["train"], *arrays["test"]),
      normalization=normalization,
      split={"how": f"tfds {name} {info.version} train/test",
             "train": len(arrays["train"][1]), "test": len(arrays["test"][1])})
  x_tr, x_te = standardize(arrays["train"][0].astype(np.float32) / 255.0,
                           arrays["test"][0].astype(np.float32) / 255.0,
                           normalization)
  return Dataset(name, x_tr, arrays["train"][1], x_te, arrays["test"][1],
                 int(info.features["label"].num_classes),
                 source=f"tensorflow-datasets {name} {info.version} "
                        f"({data_dir or 'default data dir'})",
                 fingerprint=fingerprint)
