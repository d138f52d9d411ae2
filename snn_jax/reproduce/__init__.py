"""Reproductions of the seed papers' central claims.

One module per paper, each with a config dataclass, ``reduced_config(base)``
(the committed default, bounded time on a 2-core CPU), ``full_config(base)``
(closer to the paper's scale) and ``run(config, workdir)``, which writes
result rows (CSV/JSON), ``summary.json`` (statistics with intervals over
seeds), ``provenance.json`` (command, versions, data, wall time) and plots:

* :mod:`~snn_jax.reproduce.bourely2017` -- accuracy against density and
  expansion (spectral gap, algebraic connectivity);
* :mod:`~snn_jax.reproduce.liu2020` -- SET against dense, NNSTD between the
  topologies of independent runs;
* :mod:`~snn_jax.reproduce.isakov2020` -- very deep sparse networks under
  naive and sparsity-aware initialisation; data-free topology scores against
  trained accuracy;
* :mod:`~snn_jax.reproduce.alford2019` -- pruning-derived topologies against
  RadiX-Nets at matching sparsity; instability at extreme sparsity.

``experiments/reproduce.py --paper=<name>`` runs one of them. Paper-scale
configurations (the authors' own setup, hours of CPU) live beside them:
``PAPER_SCALE[name]`` is a module with ``paper_config(base)`` and
``run(config, workdir, report_only=False)``: :mod:`~snn_jax.reproduce.
alford2019_paper`, :mod:`~snn_jax.reproduce.liu2020_paper` (the Figure-4
experiment), :mod:`~snn_jax.reproduce.bourely2017_paper` and
:mod:`~snn_jax.reproduce.isakov2020_paper` (the studies on full MNIST and
Fashion-MNIST). ``PAPER_SCALE_PARTS`` names the parts of a paper-scale
study that has several: liu2020's ``figure4`` (the default) and
``sparse_vs_dense`` (:mod:`~snn_jax.reproduce.liu2020_sparse_vs_dense`).
"""

from snn_jax.reproduce import (alford2019, alford2019_paper, bourely2017,
                               bourely2017_paper, isakov2020, isakov2020_paper,
                               liu2020, liu2020_paper, liu2020_sparse_vs_dense)
from snn_jax.reproduce._common import mean_ci, seed_bootstrap_corr
from snn_jax.studies.deep_init import DeepInitConfig, plot_deep_init, run_deep_init

PAPERS = {"bourely2017": bourely2017, "liu2020": liu2020,
          "isakov2020": isakov2020, "alford2019": alford2019}
PAPER_SCALE = {"alford2019": alford2019_paper, "liu2020": liu2020_paper,
               "bourely2017": bourely2017_paper,
               "isakov2020": isakov2020_paper}
# Papers whose paper-scale study has several parts (``--part``); the first
# is what PAPER_SCALE runs.
PAPER_SCALE_PARTS = {"liu2020": {"figure4": liu2020_paper,
                                 "sparse_vs_dense": liu2020_sparse_vs_dense}}

__all__ = ["PAPERS", "PAPER_SCALE", "PAPER_SCALE_PARTS",
           "liu2020_sparse_vs_dense", "alford2019_paper", "bourely2017_paper", "isakov2020_paper",
           "liu2020_paper", "DeepInitConfig", "alford2019", "bourely2017",
           "isakov2020", "liu2020", "mean_ci", "plot_deep_init",
           "run_deep_init", "seed_bootstrap_corr"]
