"""One flat metrics row per layer and per stack, for tables and sweeps."""

from __future__ import annotations

import time
from typing import Any, Sequence

from snn_jax.analysis._degrees import degree_stats
from snn_jax.analysis._paths import path_stats
from snn_jax.analysis._spectral import algebraic_connectivity, spectral_gap
from snn_jax.topology import Topology


def metrics_table(stack: Sequence[Topology], *, spectral: bool = True,
                  whole_network: bool = True) -> list[dict[str, Any]]:
  """Rows of data-free metrics: one per layer (``scope="layer"``) and, with
  ``whole_network``, one for the whole stack (``scope="network"``).

  Columns: name, scope, layer, n_in, n_out, block_size, density, nnz,
  fan_in/fan_out min/max/mean, spectral_gap (normalised), spectral_gap_raw,
  algebraic_connectivity, and for the network row reachability, path-count
  cv/min/max and dead units. ``seconds`` is the time the row took.
  """
  stack = list(stack)
  rows = []
  for l, t in enumerate(stack):
    t0 = time.perf_counter()
    deg = degree_stats(t)
    row = {"name": t.name, "scope": "layer", "layer": l, "n_in": t.n_in,
           "n_out": t.n_out, "block_size": t.block_size,
           "density": t.density, "nnz": t.nnz,
           "fan_in_min": deg["fan_in"]["min"], "fan_in_max": deg["fan_in"]["max"],
           "fan_in_mean": deg["fan_in"]["mean"],
           "fan_out_min": deg["fan_out"]["min"],
           "fan_out_max": deg["fan_out"]["max"],
           "fan_out_mean": deg["fan_out"]["mean"]}
    if spectral:
      row["spectral_gap"] = spectral_gap(t)
      row["spectral_gap_raw"] = spectral_gap(t, normalized=False)
      row["algebraic_connectivity"] = algebraic_connectivity(t)
    row["seconds"] = time.perf_counter() - t0
    rows.append(row)
  if whole_network:
    t0 = time.perf_counter()
    ps = path_stats(stack)
    nnz = sum(t.nnz for t in stack)
    dense = sum(t.n_in * t.n_out for t in stack)
    row = {"name": stack[0].name, "scope": "network", "layer": -1,
           "n_in": stack[0].n_in, "n_out": stack[-1].n_out,
           "block_size": stack[0].block_size, "density": nnz / dense,
           "nnz": nnz, "reachability": ps["reachability"],
           "paths_cv": ps["paths"]["cv"], "paths_min": ps["paths"]["min"],
           "paths_max": ps["paths"]["max"],
           "dead_units": sum(ps["dead_units"])}
    if spectral:
      row["spectral_gap"] = spectral_gap(stack)
      row["algebraic_connectivity"] = algebraic_connectivity(stack)
    row["seconds"] = time.perf_counter() - t0
    rows.append(row)
  return rows
