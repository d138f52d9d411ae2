"""Training: the loop (``train_and_evaluate``), checkpoints and metrics."""

from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.loop import (MODELS, OPTIMIZERS, SCHEDULES, TrainConfig,
                                   build_model, build_topologies, evaluate,
                                   WorkdirWriteError, finished_summary,
                                   make_optimizer, restore_model,
                                   train_and_evaluate)
from snn_jax.training.metrics import MetricWriter
from snn_jax.training.sweep import (SweepConfig, correlations, plot_sweep,
                                    run_name, run_sweep)

__all__ = ["Checkpointer", "MetricWriter", "MODELS", "OPTIMIZERS", "SCHEDULES",
           "SweepConfig", "TrainConfig", "WorkdirWriteError", "build_model", "correlations",
           "plot_sweep", "run_name", "run_sweep", "build_topologies", "evaluate",
           "finished_summary", "make_optimizer", "restore_model", "train_and_evaluate"]
