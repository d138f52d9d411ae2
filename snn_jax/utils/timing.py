"""Wall-clock timing of jitted functions: warm-up, block_until_ready,
median of repeats."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def time_fn(fn: Callable[..., Any], *args, warmup: int = 2, repeats: int = 7,
            min_seconds: float = 0.0, slow_seconds: float = 1.0) -> dict[str, float]:
  """Times ``fn(*args)`` (synchronised with ``jax.block_until_ready``).

  Runs ``warmup`` untimed calls (compilation happens there), then at least
  ``repeats`` timed calls and, if ``min_seconds`` > 0, more until that much
  time was spent. A function whose warm call takes over ``slow_seconds`` is
  timed only ``min(repeats, 3)`` times (once above 5x that), and reported
  with the count it got. Returns median/p10/p90 in
  milliseconds and the count.
  """
  t_warm = 0.0
  for i in range(warmup):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    t_warm = time.perf_counter() - t0
    if i > 0 and t_warm > 5 * slow_seconds:
      break  # compiled and very slow: more warm-up only costs time
  if t_warm > slow_seconds:
    repeats, min_seconds = min(repeats, 3 if t_warm < 5 * slow_seconds else 1), 0.0
  times = []
  start = time.perf_counter()
  while len(times) < repeats or (time.perf_counter() - start) < min_seconds:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  ms = np.asarray(times) * 1e3
  return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
          "p90_ms": float(np.percentile(ms, 90)), "repeats": len(times)}
