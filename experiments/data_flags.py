"""Flags that say where a dataset comes from, shared by every binary that
loads one (the dataset flag's default differs per binary)."""

from absl import flags

from snn_jax import data

DATA_DIR = flags.DEFINE_string("data_dir", None,
                               "Directory of IDX files, or an .npz file.")
TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir.")
TFDS_MANUAL_DIR = flags.DEFINE_string("tfds_manual_dir", None,
                                      "Directory with the canonical archives.")
DATA_SPLIT = flags.DEFINE_enum(
    "data_split", "auto", list(data.SPLITS),
    "IDX --data_dir only: 'canonical' (the files' train/test split), "
    "'test_only' (a seeded split of the 10,000 test images), or 'auto' "
    "(canonical where the training files are present; the reduced "
    "reproductions use test_only).")
TFDS_DOWNLOAD = flags.DEFINE_bool("tfds_download", False,
                                  "Allow TFDS to download (needs network).")


def define_dataset_flags(default: str) -> flags.FlagHolder:
  """Defines --dataset with the given default; returns its holder."""
  return flags.DEFINE_enum("dataset", default, list(data.DATASETS),
                           "Dataset; 'digits' is embedded (no network).")
