"""What a ``TrainConfig`` builds: the topologies, the model, the optax
optimiser with its learning-rate schedule, and the ``nnx`` optimizer --
``SparseOptimizer``, the one rewiring engine, where connections change."""

from __future__ import annotations

from typing import Sequence

import optax
from flax import nnx

from snn_jax import topology as topology_lib
from snn_jax.nn import AlfordLeNet5, LeNet5, SparseMLP
from snn_jax.sparse_training import DynamicSparsity, SparseOptimizer
from snn_jax.topology import Topology
from snn_jax.training.config import TrainConfig


def build_topologies(config: TrainConfig, input_dim: int,
                     num_classes: int) -> list[topology_lib.Topology]:
  """The config's per-layer topologies on data of ``input_dim`` features
  and ``num_classes`` classes (``ModelConfig.make_topologies`` seeded by
  the run's seed)."""
  return config.model.make_topologies(input_dim, num_classes,
                                      seed=config.run.seed)


def build_model(config: TrainConfig, topologies: Sequence[Topology]
                ) -> SparseMLP | LeNet5 | AlfordLeNet5:
  """The config's module on ``topologies``, initialised from the run's
  seed (``ModelConfig.build``)."""
  seed = config.run.seed
  return config.model.build(topologies, nnx.Rngs(params=seed, dropout=seed + 1))


def make_optimizer(config: TrainConfig, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The config's optax optimiser and its learning-rate schedule
  (``OptimizerConfig.make`` over the run's epochs)."""
  return config.optimizer.make(epochs=config.run.epochs,
                               steps_per_epoch=steps_per_epoch)


def build_optimizer(config: TrainConfig, model, tx: optax.GradientTransformation,
                    steps_per_epoch: int) -> nnx.Optimizer:
  """The run's optimizer: ``SparseOptimizer`` (the one rewiring engine) for
  a run whose connections change, else a plain ``nnx.Optimizer``."""
  if not config.sparse.dynamic:
    return nnx.Optimizer(model, tx, wrt=nnx.Param)
  return SparseOptimizer(model, DynamicSparsity(
      config.rewiring, total_steps=config.run.epochs * steps_per_epoch,
      steps_per_epoch=steps_per_epoch).wrap(tx))
