"""The portable build: one native module per CPU target, the best one this
CPU runs loaded at import, an override, and every compiled target checked
by the native kernel tests on this machine."""

import os
import subprocess
import sys

import pytest

from snn_jax.kernels import native_cpu
from tests.conftest import REPO_ROOT

LANES = {"x86_64_v4": 16, "x86_64_v3": 8, "x86_64_v2": 4, "armv8": 4}
V4 = native_cpu.TARGET_FEATURES["x86_64_v4"]
V3 = native_cpu.TARGET_FEATURES["x86_64_v3"]
V2 = native_cpu.TARGET_FEATURES["x86_64_v2"]
ALL_X86 = ("x86_64_v4", "x86_64_v3", "x86_64_v2")


@pytest.mark.parametrize("compiled, features, forced, target, why", [
    (ALL_X86, V4 | V3 | V2, None, "x86_64_v4", ""),
    # an AVX2 machine, and one with SSE4.2 only
    (ALL_X86, V3 | V2, None, "x86_64_v3", ""),
    (ALL_X86, V2, None, "x86_64_v2", ""),
    # features unreadable: the most portable build
    (ALL_X86, None, None, "x86_64_v2", ""),
    (("x86_64_v4",), V3 | V2, None, None, "none of the compiled"),
    ((), V4, None, None, "no compiled native target"),
    # the override: honoured, refused where the CPU lacks the instructions
    # or the target was not built
    (ALL_X86, V4 | V3 | V2, "x86_64_v3", "x86_64_v3", ""),
    (ALL_X86, V3 | V2, "x86_64_v4", None, "lacks (avx512bw, avx512cd"),
    (ALL_X86, V4 | V3 | V2, "native", None, "is not compiled here"),
    (("native", "x86_64_v2"), V2, None, "native", ""),
])
def test_choose_target(compiled, features, forced, target, why):
  got, reason = native_cpu.choose_target(compiled, features, forced)
  assert got == target
  assert why in reason and (not why) == (not reason)


@pytest.mark.skipif(not native_cpu.AVAILABLE, reason=native_cpu.UNAVAILABLE_REASON)
def test_the_loaded_target_is_the_best_this_cpu_runs():
  forced = os.environ.get("SNN_JAX_NATIVE_TARGET")
  expected = forced or native_cpu.choose_target(
      native_cpu.COMPILED_TARGETS, native_cpu.cpu_features())[0]
  assert native_cpu.TARGET == expected
  if expected in LANES:
    assert native_cpu.vector_lanes() == LANES[expected]


def _runnable_targets():
  features = native_cpu.cpu_features()
  out = []
  for t in native_cpu.COMPILED_TARGETS:
    if t == native_cpu.TARGET:
      continue  # loaded here: the suite itself runs its tests
    runs = features is None or native_cpu.TARGET_FEATURES[t] <= features
    out.append(pytest.param(t, marks=pytest.mark.skipif(
        not runs, reason=f"this CPU cannot run {t}")))
  return out or [pytest.param(None, marks=pytest.mark.skip(
      reason=native_cpu.UNAVAILABLE_REASON))]


@pytest.mark.slow
@pytest.mark.parametrize("target", _runnable_targets())
def test_every_compiled_target_passes_the_native_kernel_tests(target):
  """The native kernel tests (every block size, dtype and layout against
  the float64 oracle, non-finite propagation, the same bits for any
  thread count and pool; the convolution's too) run on this target, forced; the target loaded by
  default runs them in the suite itself."""
  env = {**os.environ, "SNN_JAX_NATIVE_TARGET": target}
  r = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       os.path.join("tests", "kernels", "test_impls.py"),
       os.path.join("tests", "kernels", "test_native_targets.py"),
       os.path.join("tests", "ops", "test_conv.py"),
       "-k", "native_cpu or loaded_target"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
  assert " passed" in r.stdout and " skipped" not in r.stdout.split("\n")[-2]
