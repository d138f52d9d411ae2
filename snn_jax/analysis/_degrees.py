"""Fan-in / fan-out statistics of one layer or each layer of a stack."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from snn_jax.topology import Topology


def degree_stats(t: Topology) -> dict[str, Any]:
  """Summary of a layer's degrees.

  Returns a dict with ``fan_in`` and ``fan_out`` summaries (min, max, mean,
  std over output / input neurons), ``isolated_inputs`` (inputs feeding
  nothing) and ``isolated_outputs`` (outputs fed by nothing).
  """
  def summary(d):
    return {"min": int(d.min()), "max": int(d.max()), "mean": float(d.mean()),
            "std": float(d.std())}
  fi, fo = t.fan_in(), t.fan_out()
  return {"fan_in": summary(fi), "fan_out": summary(fo),
          "isolated_inputs": int((fo == 0).sum()),
          "isolated_outputs": int((fi == 0).sum())}


def degree_histogram(degrees: np.ndarray, bins: int | Sequence[float] = 30):
  """(counts, edges) of a degree array, as ``np.histogram``."""
  return np.histogram(np.asarray(degrees), bins=bins)
