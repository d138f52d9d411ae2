"""Isakov & Kinsy 2020 (NeuroFabric, arXiv:2002.08339) at paper scale: the
experiments of :mod:`~snn_jax.reproduce.isakov2020` on full MNIST and full
Fashion-MNIST (canonical 60,000/10,000 splits): the depth experiment to 64
hidden layers with each initialisation, the dead-unit experiment with five
seeds, and the topology ranking against the data-free score.

Only the abstract is reachable (``../shared/papers/README.md``): the setup
is ours, recorded in ``summary["choices"]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from snn_jax.reproduce import _per_dataset, isakov2020
from snn_jax.training import TrainConfig

CHOICES = ("depth: 8, 16, 32, 64 hidden layers of 256 at density 5 %, "
           "dense_he / sparse_he / neurofabric, three seeds, 5 epochs",
           "dead units: 8-64 layers at hidden fan-in 3, five seeds, 5 epochs",
           "ranking: 784 -> 10 x 256 -> 10 at fan-in 16, the reduced "
           "study's families, five seeds, 10 epochs",
           "SGD with Nesterov momentum 0.9, lr 0.05, cosine decay, batch 128; "
           "accuracy on the canonical 10,000 test images")


def paper_config(base: TrainConfig) -> _per_dataset.PerDatasetConfig:
  configs = []
  for name, b in _per_dataset.dataset_bases(base, {"run.epochs": 10}):
    reduced = isakov2020.IsakovConfig(base=b)
    configs.append((name, dataclasses.replace(
        reduced, depth_seeds=(0, 1, 2), depth_epochs=5,
        seeds=tuple(range(5)), dead_depths=(8, 16, 32, 64),
        dead_seeds=tuple(range(5)))))
  return _per_dataset.PerDatasetConfig(paper="isakov2020", choices=CHOICES,
                                       configs=tuple(configs))


def run(cfg: _per_dataset.PerDatasetConfig, workdir: str, *,
        report_only: bool = False) -> dict[str, Any]:
  return _per_dataset.run(cfg, workdir, run_one=isakov2020.run,
                          report_only=report_only)
