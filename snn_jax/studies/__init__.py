"""Studies: experiments made of many training runs, above the training
loop. Each takes a config, runs its grid with restart-safe skipping
(finished runs are not redone), and writes rows, statistics, plots and a
summary -- on one skeleton, :func:`run_study` with a :class:`Study` (its
grid, statistics, plots and declared summary schema); ``_runs`` holds the
pieces a grid uses (``train``, ``train_stack`` and ``stack_of``, ``guarded``,
``reporting_only``, ``Provenance``):

* :func:`prune_and_retrain` (:mod:`~snn_jax.studies.pruning`) -- train
  dense, magnitude-prune, retrain (one-shot, iterative, lottery-ticket
  rewinding); ``experiments/prune.py``;
* :func:`run_sweep` (:mod:`~snn_jax.studies.sweep`) -- topology families x
  densities x seeds with data-free metrics beside accuracy;
  ``experiments/sweep.py``;
* :func:`run_deep_init` (:mod:`~snn_jax.studies.deep_init`) -- very deep
  sparse MLPs under each initialiser; ``experiments/deep_init.py``;
* :func:`run_evolution` (:mod:`~snn_jax.studies.evolution`) -- runs with
  topology snapshots and the NNSTD evolution report;
  ``experiments/evolution.py``.

``_stats`` holds the statistics over seeds every study uses
(``mean_ci``, ``group_stats``, ``paired_difference``,
``seed_bootstrap_corr``); :func:`load_rows` reads a finished study's rows.

The reproductions of the four seed papers are studies too; they live in
:mod:`snn_jax.reproduce` (``experiments/reproduce.py``).
"""

from snn_jax.studies._runs import (NOT_FINISHED, NotFinished, failed_rows,
                                   guarded, ok_rows, reporting_only, run_row,
                                   stack_of, train, train_stack)
from snn_jax.studies._stats import (accuracy_verdict, bootstrap_mean_ci,
                                    collapsed_runs, comparison_verdict,
                                    group_stats, mean_ci, paired_difference,
                                    seed_bootstrap_corr)
from snn_jax.studies._study import Study, load_rows, run_study
from snn_jax.studies.deep_init import (DEEP_INIT, DeepInitConfig,
                                       deep_init_rows, plot_deep_init,
                                       run_deep_init)
from snn_jax.studies.evolution import (EVOLUTION, EvolutionConfig,
                                       run_evolution)
from snn_jax.studies.pruning import (PRUNING, SCOPES, PruneConfig,
                                     PruningStudyConfig, prune_and_retrain)
from snn_jax.studies.sweep import (SWEEP, SweepConfig, correlations,
                                   plot_sweep, run_name, run_sweep,
                                   sweep_rows)

__all__ = ["NOT_FINISHED", "NotFinished", "failed_rows", "guarded", "ok_rows",
           "reporting_only", "run_row", "stack_of", "train", "train_stack",
           "DEEP_INIT", "EVOLUTION", "EvolutionConfig", "PRUNING", "PruningStudyConfig", "SWEEP",
           "DeepInitConfig", "PruneConfig", "SCOPES", "Study",
           "SweepConfig", "correlations", "deep_init_rows", "group_stats",
           "load_rows", "mean_ci", "accuracy_verdict", "bootstrap_mean_ci", "collapsed_runs", "comparison_verdict", "paired_difference", "plot_deep_init",
           "prune_and_retrain", "run_deep_init", "run_evolution", "run_name", "run_study",
           "run_sweep", "seed_bootstrap_corr", "sweep_rows"]
