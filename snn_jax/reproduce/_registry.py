"""The one registry of reproductions, keyed by (paper, scale, part).

A :class:`Reproduction` is what ``experiments/reproduce.py`` (or a
notebook) needs to run one: how to make its study config from a base
``TrainConfig`` (the data source), how to run it, and whether it can
report from committed runs without training (``--report_only``: the
paper-scale studies, whose runs are committed).

Scales: ``reduced`` (bounded grids on the 8,000 / 2,000 split of the MNIST
test files, minutes) and ``paper`` (the authors' own setups on the full
data, hours). Parts: ``main`` where a paper has one study at a scale;
Liu 2020 at paper scale has ``figure4`` and ``sparse_vs_dense``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from snn_jax.reproduce import (alford2019, alford2019_paper, bourely2017,
                               bourely2017_paper, isakov2020,
                               isakov2020_paper, liu2020, liu2020_paper,
                               liu2020_sparse_vs_dense)

SCALES = ("reduced", "paper")


@dataclasses.dataclass(frozen=True)
class Reproduction:
  """Attributes:
    paper, scale, part: its key.
    make_config: ``base TrainConfig -> study config``.
    run: ``(config, workdir, **kwargs) -> summary``; takes
      ``report_only=True`` where ``reports_only`` is set.
    reports_only: whether it can report without training: the paper-scale
      studies from their committed runs, reduced Bourely, Alford and
      Isakov from their committed rows tables (reduced runs are not kept;
      reduced Liu needs the SET runs' topologies for NNSTD and cannot).
    module: where it is defined (its docstring says what it does).
  """
  paper: str
  scale: str
  part: str
  make_config: Callable[[Any], Any]
  run: Callable[..., dict[str, Any]]
  reports_only: bool
  module: Any


def _entry(paper, scale, part, module, config_name, reports_only):
  return Reproduction(paper, scale, part, getattr(module, config_name),
                      module.run, reports_only, module)


REPRODUCTIONS: dict[tuple[str, str, str], Reproduction] = {
    (r.paper, r.scale, r.part): r for r in (
        _entry("bourely2017", "reduced", "main", bourely2017,
               "reduced_config", True),
        _entry("bourely2017", "paper", "main", bourely2017_paper,
               "paper_config", True),
        _entry("liu2020", "reduced", "main", liu2020, "reduced_config", False),
        _entry("liu2020", "paper", "figure4", liu2020_paper, "paper_config",
               True),
        _entry("liu2020", "paper", "sparse_vs_dense", liu2020_sparse_vs_dense,
               "paper_config", True),
        _entry("isakov2020", "reduced", "main", isakov2020, "reduced_config",
               True),
        _entry("isakov2020", "paper", "main", isakov2020_paper,
               "paper_config", True),
        _entry("alford2019", "reduced", "main", alford2019, "reduced_config",
               True),
        _entry("alford2019", "paper", "main", alford2019_paper,
               "paper_config", True),
        _entry("alford2019", "paper", "lenet5_sheet_budget", alford2019_paper,
               "lenet5_sheet_config", True),
    )}

PAPERS: tuple[str, ...] = tuple(dict.fromkeys(k[0] for k in REPRODUCTIONS))


def parts(paper: str, scale: str) -> tuple[str, ...]:
  """The parts of ``paper`` at ``scale``, the default first."""
  return tuple(k[2] for k in REPRODUCTIONS if k[:2] == (paper, scale))


def reproduction(paper: str, scale: str = "reduced",
                 part: str | None = None) -> Reproduction:
  """The registered reproduction; ``part`` None is the scale's first.
  Unknown keys raise ``ValueError`` naming what there is."""
  if paper not in PAPERS:
    raise ValueError(f"no reproduction of {paper!r}; papers: {list(PAPERS)}")
  if scale == "full":
    raise ValueError("--scale=full is retired: --scale=paper runs each "
                     "paper's own setup on the full data")
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  known = parts(paper, scale)
  if part is None:
    part = known[0]
  if part not in known:
    raise ValueError(f"--part={part}: {paper} at scale {scale} has "
                     + (f"the parts {', '.join(known)}" if len(known) > 1
                        else "one part only"))
  return REPRODUCTIONS[(paper, scale, part)]
