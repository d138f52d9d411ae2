"""Paper-scale runs of a study on each of several full datasets (Bourely
et al. 2017 and Isakov & Kinsy 2020 at paper scale: MNIST and
Fashion-MNIST, canonical 60,000/10,000 splits)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

from snn_jax.reproduce import _common
from snn_jax.training import TrainConfig

DATASETS = ("mnist", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class PerDatasetConfig:
  """Attributes:
    paper: the study's name (``snn_jax.reproduce.PAPERS``).
    configs: ``(dataset name, the study's config on that dataset)`` pairs.
    choices: the setup choices the paper's public material leaves open,
      recorded in the summary.
  """
  paper: str
  configs: tuple[tuple[str, Any], ...]
  choices: tuple[str, ...] = ()

  def __post_init__(self):
    if not self.configs:
      raise ValueError("need at least one dataset")


def dataset_bases(base: TrainConfig, setup: Mapping[str, Any] | None = None
                  ) -> list[tuple[str, TrainConfig]]:
  """One base config per dataset in ``DATASETS``: ``base.data.data_dir`` is
  the folder that holds one IDX folder per dataset (``<data_dir>/mnist``,
  ``<data_dir>/fashion_mnist``, as ``../shared/datasets`` does); the
  canonical split; ``setup`` sets further fields by dotted path
  (``TrainConfig.override``)."""
  if base.data.data_dir is None:
    raise ValueError("paper-scale runs read IDX files: give --data_dir, the "
                     "folder holding mnist/ and fashion_mnist/ (e.g. "
                     "../shared/datasets)")
  out = []
  for name in DATASETS:
    folder = os.path.join(base.data.data_dir, name)
    if not os.path.isdir(folder):
      raise FileNotFoundError(
          f"{folder!r} does not exist: --data_dir must be the folder holding "
          f"one IDX folder per dataset ({', '.join(DATASETS)})")
    out.append((name, base.override({
        "data.name": name, "data.data_dir": folder, "data.split": "canonical",
        "run.progress": False, **(setup or {})})))
  return out


def run(cfg: PerDatasetConfig, workdir: str, *,
        run_one: Callable[[Any, str], dict[str, Any]],
        report_only: bool = False) -> dict[str, Any]:
  """Runs ``run_one(config, workdir/<dataset>)`` per dataset (each resumes
  its own runs); with ``report_only`` trains nothing and reports what has
  finished. Writes a combined ``summary.json``; returns it."""
  os.makedirs(workdir, exist_ok=True)
  summary: dict[str, Any] = {"paper": cfg.paper, "choices": list(cfg.choices),
                             "datasets": {}, "failed": []}
  with _common.reporting_only(report_only):
    for name, inner in cfg.configs:
      s = run_one(inner, os.path.join(workdir, name))
      summary["datasets"][name] = s
      summary["failed"] += [{**f, "dataset": name} for f in s.get("failed", [])]
  for key in ("runs", "runs_finished"):
    counts = [s.get(key) for s in summary["datasets"].values()]
    if all(isinstance(c, int) for c in counts):
      summary[key] = sum(counts)
  summary["report_only"] = report_only
  _common.write_summary(summary, workdir)
  summary["provenance"] = {"wall_seconds": sum(
      s["provenance"]["wall_seconds"] for s in summary["datasets"].values())}
  return summary
