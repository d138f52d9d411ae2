"""Training: what a config builds (``build``), the loop
(``train_and_evaluate``), the workdir it owns (``workdir``), checkpoints
read back (``restore``) and metrics (``metrics``)."""

from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.config import (FLAT_NAMES, OPTIMIZERS, SCHEDULES,
                                     OptimizerConfig, RunConfig, TrainConfig,
                                     restart_every)
from snn_jax.training.build import (build_model, build_optimizer,
                                    build_topologies, make_optimizer)
from snn_jax.training.loop import evaluate, train_and_evaluate
from snn_jax.training.restore import restore_model
from snn_jax.training.workdir import (WorkdirWriteError, diverged_record,
                                      finished_summary)
from snn_jax.training.metrics import MetricWriter
from snn_jax.training import set_variants
from snn_jax.training.set_variants import SET_VARIANTS, SetVariant

from snn_jax.utils.moved import moved_to

__all__ = ["Checkpointer", "FLAT_NAMES", "MetricWriter", "OPTIMIZERS",
           "SET_VARIANTS", "SetVariant", "set_variants", "restart_every",
           "OptimizerConfig", "RunConfig", "SCHEDULES", "TrainConfig",
           "WorkdirWriteError", "build_model", "build_optimizer",
           "build_topologies", "evaluate",
           "diverged_record", "finished_summary", "make_optimizer", "restore_model", "train_and_evaluate"]


__getattr__ = moved_to(
    __name__, ("SweepConfig", "correlations", "plot_sweep", "run_name", "run_sweep"),
    "snn_jax.studies", "multi-run studies live above training; see "
    "ARCHITECTURE.md")
