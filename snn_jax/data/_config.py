"""``DataConfig``: which data a run reads, and how, as data."""

from __future__ import annotations

import dataclasses

from snn_jax.data._dataset import NORMALIZATIONS, Dataset, parse_validation_spec
from snn_jax.data.idx import SPLITS
from snn_jax.utils.config import ConfigPart


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigPart):
  """A dataset by name, where it is read from, and how it is prepared.

  Attributes:
    name: ``snn_jax.data.DATASETS`` (``digits`` is embedded, no files).
    data_dir: IDX folder or ``.npz`` file; None reads through TFDS
      (``tfds_data_dir``, ``tfds_manual_dir``, ``tfds_download``).
    normalization: ``"global"`` or ``"per_feature"`` standardisation.
    split: IDX folders only: ``"auto"``, ``"canonical"`` or ``"test_only"``
      (``snn_jax.data.load_idx_dir``).
    validation: ``"first:N"`` / ``"last:N"`` training examples held out
      (``Dataset.with_validation``); None holds out nothing.
    split_seed: seed of the train/held-out split for data split here
      (digits, the IDX test-set files); None: the run's seed. Fix it to
      compare seeds on one held-out set.
  The location fields say where the data is, not what it is: a dataset's
  identity is its ``fingerprint`` (``Dataset.fingerprint``).
  """
  name: str = "digits"
  data_dir: str | None = None
  tfds_data_dir: str | None = None
  tfds_manual_dir: str | None = None
  tfds_download: bool = False
  normalization: str = "global"
  split: str = "auto"
  validation: str | None = None
  split_seed: int | None = None

  # Fields that locate the data; changing them changes no result.
  LOCATION_FIELDS = ("data_dir", "tfds_data_dir", "tfds_manual_dir")

  def __post_init__(self):
    from snn_jax.data import DATASETS
    if self.name not in DATASETS:
      raise ValueError(f"unknown dataset {self.name!r}; known: "
                       f"{', '.join(DATASETS)}")
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got "
                       f"{self.normalization!r}")
    if self.split not in SPLITS:
      raise ValueError(f"data split must be one of {SPLITS}, got "
                       f"{self.split!r}")
    if self.validation is not None:
      parse_validation_spec(self.validation)

  def seed(self, run_seed: int) -> int:
    """The split seed for a run seeded ``run_seed``."""
    return run_seed if self.split_seed is None else self.split_seed

  def load(self, run_seed: int = 0) -> Dataset:
    """The dataset, split with ``seed(run_seed)``, validation part held
    out, flattened; its ``fingerprint`` records exactly what was read."""
    from snn_jax.data import load
    ds = load(self.name, data_dir=self.data_dir,
              tfds_data_dir=self.tfds_data_dir, manual_dir=self.tfds_manual_dir,
              download=self.tfds_download, seed=self.seed(run_seed),
              normalization=self.normalization, split=self.split)
    return self.with_validation(ds)

  def with_validation(self, ds: Dataset) -> Dataset:
    """``ds`` with this config's validation part held out (unchanged when
    ``validation`` is None or ``ds`` already holds it); a dataset holding
    another validation part is refused."""
    if ds.validation_spec == self.validation:
      return ds
    if ds.validation_spec is not None:
      raise ValueError(f"the dataset holds validation part "
                       f"{ds.validation_spec!r}, the config asks for "
                       f"{self.validation!r}")
    return ds.with_validation(self.validation)



