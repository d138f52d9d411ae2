"""Bourely, Boueri & Choromanski 2017 (arXiv:1706.05683) at paper scale:
the topology families of :mod:`~snn_jax.reproduce.bourely2017` on full
MNIST and full Fashion-MNIST (canonical 60,000/10,000 splits), trained
until the curves flatten, with the input-permutation control.

Only the paper's abstract is reachable (``../shared/papers/README.md``), so
the setup is ours, recorded in ``summary["choices"]``: 784-512-512-10 with
both hidden layers sparse; the reduced study's families and densities 1 %,
3 %, 10 %; five seeds; 20 epochs of SGD with momentum and cosine decay;
accuracy on the 10,000 test images.
"""

from __future__ import annotations

from typing import Any

from snn_jax.reproduce import _per_dataset, bourely2017
from snn_jax.training import TrainConfig

EPOCHS = 20
CHOICES = ("784-512-512-10, both hidden layers sparse, output dense",
           "families and densities of the reduced study; five seeds",
           f"{EPOCHS} epochs, SGD with Nesterov momentum 0.9, lr 0.05, cosine "
           "decay, batch 128; accuracy on the canonical 10,000 test images")


def paper_config(base: TrainConfig) -> _per_dataset.PerDatasetConfig:
  return _per_dataset.PerDatasetConfig(
      paper="bourely2017", choices=CHOICES,
      configs=tuple((name, bourely2017.BourelyConfig(base=b))
                    for name, b in _per_dataset.dataset_bases(
                        base, {"run.epochs": EPOCHS})))


def run(cfg: _per_dataset.PerDatasetConfig, workdir: str, *,
        report_only: bool = False) -> dict[str, Any]:
  return _per_dataset.run(cfg, workdir, run_one=bourely2017.run,
                          report_only=report_only)
