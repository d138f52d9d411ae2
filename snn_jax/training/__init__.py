"""Training: the loop (``train_and_evaluate``), checkpoints and metrics."""

from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.loop import (MODELS, OPTIMIZERS, SCHEDULES, TrainConfig,
                                   build_model, build_topologies, evaluate,
                                   WorkdirWriteError, finished_summary,
                                   make_optimizer, restore_model,
                                   train_and_evaluate)
from snn_jax.training.metrics import MetricWriter

__all__ = ["Checkpointer", "MetricWriter", "MODELS", "OPTIMIZERS", "SCHEDULES",
           "TrainConfig", "WorkdirWriteError", "build_model", "build_topologies", "evaluate",
           "finished_summary", "make_optimizer", "restore_model", "train_and_evaluate"]


_MOVED = {"SweepConfig", "correlations", "plot_sweep", "run_name",
          "run_sweep"}


def __getattr__(name):  # names that moved up to the studies tier
  if name in _MOVED:
    raise AttributeError(
        f"{__name__}.{name} moved to snn_jax.studies.{name} (multi-run "
        "studies live above training; see ARCHITECTURE.md)")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
