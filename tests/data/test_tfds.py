"""The TFDS path, on data from ``tfds.testing.mock_data`` (no network)."""

import os

import jax
import numpy as np
import pytest

tfds = pytest.importorskip(
    "tensorflow_datasets",
    reason="tensorflow-datasets is not installed (pip install -e '.[data]')")

from snn_jax import data  # noqa: E402
from snn_jax.training import TrainConfig, train_and_evaluate  # noqa: E402
from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import RunConfig


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)),
                                         ("fashion_mnist", (28, 28, 1)),
                                         ("cifar10", (32, 32, 3))])
@pytest.mark.slow
def test_load_tfds_mocked(name, shape):
  with tfds.testing.mock_data(num_examples=48):
    ds = data.load(name, flatten=False)
  assert ds.x_train.shape == (48, *shape) and ds.x_test.shape == (48, *shape)
  assert ds.num_classes == 10 and ds.x_train.dtype == np.float32
  assert "tensorflow-datasets" in ds.source
  assert np.isfinite(ds.x_train).all() and abs(float(ds.x_train.mean())) < 1e-3


@pytest.mark.slow
def test_train_on_mocked_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=128):
    with jax.numpy_dtype_promotion("standard"):
      s = train_and_evaluate(TrainConfig(data=DataConfig(name="fashion_mnist"), model=ModelConfig(hidden=(32,), topology=TopologyConfig(density=0.2)), run=RunConfig(epochs=1, batch_size=32, progress=False)), str(tmp_path))
  assert s["widths"] == [784, 32, 10] and 0.0 <= s["final_test_acc"] <= 1.0
  assert os.path.exists(tmp_path / "summary.json")


def test_unprepared_dataset_says_what_to_do(tmp_path):
  with pytest.raises(data.DatasetUnavailableError, match="--tfds_download"):
    data.load("mnist", tfds_data_dir=str(tmp_path))
