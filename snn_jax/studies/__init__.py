"""Studies: experiments made of many training runs, above the training
loop. Each takes a config, runs its grid with restart-safe skipping
(finished runs are not redone), and writes rows, statistics, plots and a
summary -- on one skeleton, :func:`run_study` with a :class:`Study` (its
grid, statistics, plots and declared summary schema); ``_runs`` holds the
pieces a grid uses (``train``, ``train_stack``, ``guarded``,
``reporting_only``, ``Provenance``):

* :func:`prune_and_retrain` (:mod:`~snn_jax.studies.pruning`) -- train
  dense, magnitude-prune, retrain (one-shot, iterative, lottery-ticket
  rewinding); ``experiments/prune.py``;
* :func:`run_sweep` (:mod:`~snn_jax.studies.sweep`) -- topology families x
  densities x seeds with data-free metrics beside accuracy;
  ``experiments/sweep.py``.

The reproductions of the four seed papers are studies too; they live in
:mod:`snn_jax.reproduce` (``experiments/reproduce.py``).
"""

from snn_jax.studies._study import Study, run_study
from snn_jax.studies.pruning import SCOPES, PruneConfig, prune_and_retrain
from snn_jax.studies.sweep import (SweepConfig, correlations, plot_sweep,
                                   run_name, run_sweep)

__all__ = ["PruneConfig", "SCOPES", "Study", "SweepConfig", "correlations",
           "plot_sweep", "prune_and_retrain", "run_name", "run_study", "run_sweep"]
