"""Reproductions of the seed papers' central claims.

One module per paper and scale, each a study on the skeleton
(:mod:`snn_jax.studies`) with a config dataclass and ``run(config,
workdir)``, which writes result rows (CSV/JSON), ``summary.json``
(statistics with seed-bootstrap intervals and verdicts that can fail),
``provenance.json`` (command, versions, data, wall time) and plots:

* :mod:`~snn_jax.reproduce.bourely2017` -- accuracy against density and
  expansion (spectral gap, algebraic connectivity);
* :mod:`~snn_jax.reproduce.liu2020` -- SET against dense, NNSTD between the
  topologies of independent runs;
* :mod:`~snn_jax.reproduce.isakov2020` -- very deep sparse networks under
  naive and sparsity-aware initialisation; data-free topology scores against
  trained accuracy;
* :mod:`~snn_jax.reproduce.alford2019` -- pruning-derived topologies against
  RadiX-Nets at matching sparsity; instability at extreme sparsity.

Their paper-scale setups (the authors' own, hours of CPU) live beside them
(``*_paper.py``; Liu's "sparse beats dense" in ``liu2020_sparse_vs_dense``).
:data:`REPRODUCTIONS` is the one registry of them all, keyed by (paper,
scale, part); :func:`reproduction` looks one up; ``experiments/
reproduce.py --paper=<name> --scale=<scale> [--part=<part>]`` runs it.
"""

from snn_jax.reproduce import (alford2019, alford2019_paper, bourely2017,
                               bourely2017_paper, isakov2020, isakov2020_paper,
                               liu2020, liu2020_paper, liu2020_sparse_vs_dense)
from snn_jax.reproduce._common import mean_ci, seed_bootstrap_corr
from snn_jax.reproduce._registry import (PAPERS, REPRODUCTIONS, SCALES,
                                         Reproduction, parts, reproduction)
from snn_jax.studies.deep_init import DeepInitConfig, plot_deep_init, run_deep_init

__all__ = ["PAPERS", "REPRODUCTIONS", "Reproduction", "SCALES", "parts",
           "reproduction", "liu2020_sparse_vs_dense", "alford2019_paper",
           "bourely2017_paper", "isakov2020_paper", "liu2020_paper",
           "DeepInitConfig", "alford2019", "bourely2017", "isakov2020",
           "liu2020", "mean_ci", "plot_deep_init", "run_deep_init",
           "seed_bootstrap_corr"]



def __getattr__(name: str):
  if name in ("PAPER_SCALE", "PAPER_SCALE_PARTS"):
    raise AttributeError(
        f"snn_jax.reproduce.{name} is gone: there is one registry keyed by "
        "(paper, scale, part), snn_jax.reproduce.REPRODUCTIONS; look one up "
        "with reproduction(paper, 'paper', part)")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
