"""Where the compiled SET-MLP training step spends its time, op by op, with
the native kernels' tasks on XLA's intra-op pool and on the module's own.

SET-MLP 784-1000-1000-1000-10 (epsilon 20), batch 128, random inputs: the
step as ``fit`` runs it (``set_step_breakdown.step_timers``). For each
thread pool in turn (``native_cpu.set_thread_pool``; ROUNDS rounds,
alternating) the script times STEPS steps plainly, then traces STEPS more
with ``jax.profiler`` (no Python tracer) and sums, per XLA operation of the
step (the FFI calls, XLA's fusions, copies and dots), the trace's durations
per step. The traced step is slower than the plain one (the tracer's own
cost); compare pools within one table, not with other benchmarks.

Usage (repo root; an idle machine): python benchmarks/step_profile.py
[output.json]
"""

import collections
import glob
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import set_step_breakdown  # noqa: E402  (a sibling benchmark script)

from snn_jax.kernels import native_cpu  # noqa: E402
from snn_jax.utils.env import device_info, versions  # noqa: E402

STEPS = 100
ROUNDS = 2
# Runtime events in the trace, not operations of the step.
_NOT_OPS = ("ThunkExecutor", "PjitFunction", "CommonPjRt", "Handle ",
            "ParseArguments", "Wait for", "AllocateOutput", "SlinkyThreadPool",
            "$")


def _plain_ms(step) -> float:
  r = step()
  jax.block_until_ready(r)
  t = time.perf_counter()
  for _ in range(STEPS):
    r = step()
  jax.block_until_ready(r)
  return (time.perf_counter() - t) / STEPS * 1e3


def _traced_us_per_op(step) -> dict:
  trace_dir = tempfile.mkdtemp(prefix="step_profile_")
  try:
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True,
                             profiler_options=options)
    for _ in range(STEPS):
      r = step()
    jax.block_until_ready(r)
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                            recursive=True))[-1]
    with gzip.open(path) as f:
      events = json.load(f)["traceEvents"]
  finally:
    shutil.rmtree(trace_dir, ignore_errors=True)
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(_NOT_OPS):
      total[e["name"]] += e["dur"]
  return {name: us / STEPS for name, us in total.most_common()}


def main(out: str) -> None:
  step = set_step_breakdown.step_timers(
      True, np.random.default_rng(0))["set_fit_step_cached_donated"]
  for _ in range(20):
    r = step()
  jax.block_until_ready(r)
  before = native_cpu.thread_pool()
  runs = []
  try:
    for _ in range(ROUNDS):
      for pool in ("own", "xla"):
        native_cpu.set_thread_pool(pool)
        plain = _plain_ms(step)
        ops = _traced_us_per_op(step)
        runs.append({"pool": pool, "step_ms": plain,
                     "traced_ops_us_per_step": ops,
                     "traced_ffi_calls_us": sum(
                         v for k, v in ops.items() if k.startswith("ffi_call")),
                     "traced_other_ops_us": sum(
                         v for k, v in ops.items()
                         if not k.startswith("ffi_call"))})
  finally:
    native_cpu.set_thread_pool(before)
  result = {"what": __doc__.split("\n\n")[0], "steps": STEPS, "runs": runs,
            "environment": {**device_info(), **versions(),
                            "native_threads": native_cpu.num_threads()}}
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=1)
  for r in runs:
    top = list(r["traced_ops_us_per_step"].items())[:14]
    print(f"{r['pool']}: step {r['step_ms']:.3f} ms; traced ffi calls "
          f"{r['traced_ffi_calls_us']:.0f} us, other ops "
          f"{r['traced_other_ops_us']:.0f} us")
    print("   " + ", ".join(f"{k} {v:.0f}" for k, v in top))


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "out/step_profile.json")
