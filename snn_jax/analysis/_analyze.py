"""``analyze``: metrics, files and figures for one or several topologies --
the library behind ``experiments/analyze_topology.py``."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from typing import Any, Sequence

from snn_jax.analysis._plots import plot_block_masks, plot_degree_distributions
from snn_jax.analysis._report import metrics_table
from snn_jax.topology import make_stack, names


@dataclasses.dataclass(frozen=True)
class AnalyzeConfig:
  """What to analyse. ``topologies`` are registry names; ``params`` are
  passed to every generator that accepts them (others ignore them)."""
  topologies: Sequence[str]
  widths: Sequence[int]
  density: float | None = None
  fan_in: int | None = None
  block_size: int = 1
  seed: int = 0
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  spectral: bool = True
  plots: bool = True
  skip_errors: bool = False


def write_rows(rows: list[dict[str, Any]], out_dir: str, stem: str) -> None:
  """Writes ``<stem>.json`` (list of rows) and ``<stem>.csv`` (union of keys)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
    json.dump(rows, f, indent=1)
  keys: list[str] = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  with open(os.path.join(out_dir, f"{stem}.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
  """A fixed-width text table of the given columns."""
  def cell(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return "" if v is None else str(v)
  table = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
  return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths))
                   for row in table)


def analyze(config: AnalyzeConfig, out_dir: str | None = None) -> list[dict[str, Any]]:
  """Builds each topology's stack, measures it, and (with ``out_dir``)
  writes ``metrics.json``/``metrics.csv`` plus per-topology figures
  ``<name>_mask.png`` and ``<name>_degrees.png``.

  Returns the metric rows (see :func:`metrics_table`) with a ``build_s``
  column: the seconds spent generating the topology.
  """
  unknown = [t for t in config.topologies if t not in names()]
  if unknown:
    raise ValueError(f"unknown topology {unknown}; known: {', '.join(names())}")
  from snn_jax.topology import spec
  all_rows = []
  for name in config.topologies:
    params = {k: v for k, v in config.params.items() if k in spec(name).params}
    density = None if name == "dense" else config.density
    fan_in = None if name == "dense" else config.fan_in
    t0 = time.perf_counter()
    try:
      stack = make_stack(name, config.widths, density=density, fan_in=fan_in,
                         block_size=config.block_size, seed=config.seed,
                         **params)
    except ValueError as e:
      if not config.skip_errors:
        raise
      all_rows.append({"name": name, "scope": "error", "error": str(e)})
      continue
    build_s = time.perf_counter() - t0
    rows = metrics_table(stack, spectral=config.spectral)
    for r in rows:
      r["build_s"] = build_s
    all_rows += rows
    if out_dir and config.plots:
      os.makedirs(out_dir, exist_ok=True)
      plot_block_masks(stack, os.path.join(out_dir, f"{name}_mask.png"), name)
      plot_degree_distributions(stack, os.path.join(out_dir, f"{name}_degrees.png"), name)
  if out_dir:
    write_rows(all_rows, out_dir, "metrics")
  return all_rows
