"""Training: the loop (``train_and_evaluate``), checkpoints and metrics."""

from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.loop import (OPTIMIZERS, SCHEDULES, TrainConfig,
                                   build_model, build_topologies, evaluate,
                                   make_optimizer, train_and_evaluate)
from snn_jax.training.metrics import MetricWriter

__all__ = ["Checkpointer", "MetricWriter", "OPTIMIZERS", "SCHEDULES",
           "TrainConfig", "build_model", "build_topologies", "evaluate",
           "make_optimizer", "train_and_evaluate"]
