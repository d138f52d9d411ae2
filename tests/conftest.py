"""Shared test configuration: strict JAX numerics, 4 CPU devices, helpers.

The device count must be set before jax initialises its backends.

Compiled programs are shared through a persistent compilation cache in a
fresh temporary directory per pytest invocation: the xdist workers and the
subprocesses the end-to-end tests launch (training binaries, multi-process
jobs, the notebook's kernel) inherit it through the environment, so a
program compiled once -- the same model at the same sizes -- is read back
instead of compiled again. A fresh directory per invocation keeps one run's
programs (and native kernels rebuilt since) out of the next.
"""

import os
import shutil
import tempfile
import zlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# With the accelerator toolchains installed (.[accel]): never ask the Cloud
# TPU metadata server, in this process or the subprocesses tests start.
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
_OWN_JIT_CACHE = None
try:
  import filelock  # noqa: F401  (the test extra installs it)
  _CACHE_LOCK = True
except ImportError:
  _CACHE_LOCK = False
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and _CACHE_LOCK:
  _OWN_JIT_CACHE = tempfile.mkdtemp(prefix="snn_jax_tests_jit_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_JIT_CACHE
  # A size limit turns on JAX's file lock around every read and write of
  # the cache. Without it an entry is written in place, and a process that
  # reads it while another writes it gets a truncated program: the two
  # processes of a multi-process test compile the same programs at the
  # same moment, and one such job died of SIGABRT in a CI run. The limit
  # itself is never reached. (No filelock: no shared cache, a slower suite.)
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))
  # Programs that took 0.1 s or more to compile. Keeping every program
  # (threshold 0) sped the native tests each compiled target reruns in a
  # subprocess from 70 s to 32 s, but under the lock every write
  # lists and stats the whole cache (JAX's size accounting), and with
  # every program kept the suite ran past 20 minutes.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "standard_promotion: run the test under JAX's standard dtype "
      "promotion (optax's schedules mix int32 step counts with Python floats, "
      "which the suite's strict mode rejects; training runs in standard mode)")
  config.addinivalue_line(
      "markers", "slow: a test of about 2 s or more per case on two workers (the "
      "binaries end to end, multi-process runs, the accelerator compiles), "
      "or a layout variant of a kernel test that the plain case covers; "
      "`pytest -m 'not slow'` leaves them out, CI runs them")


@pytest.fixture(autouse=True)
def _promotion_mode(request):
  """Standard dtype promotion for tests marked ``standard_promotion`` (a
  module marks all of its tests with ``pytestmark``); strict elsewhere."""
  if request.node.get_closest_marker("standard_promotion") is None:
    yield
    return
  with jax.numpy_dtype_promotion("standard"):
    yield


def pytest_unconfigure(config):
  if _OWN_JIT_CACHE is not None:  # the process that made it: xdist's controller
    shutil.rmtree(_OWN_JIT_CACHE, ignore_errors=True)


# The repository root (tests/ sits directly under it), for tests that run
# the binaries or read committed files.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(REPO_ROOT, "..", "shared",
                            "datasets", "mnist")


def _seed(request) -> int:
  # crc32, not hash(): str hashes change between processes.
  return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def rng(request):
  """A NumPy generator seeded from the test's id: fresh per test, the same
  on every run (so a failure reproduces)."""
  return np.random.default_rng(_seed(request))


@pytest.fixture
def key(request):
  return jax.random.key(_seed(request))


def poisoned(shape, dtype):
  """An array of NaN (floats) or iinfo.min (ints): catches unwritten output."""
  dtype = np.dtype(dtype) if not hasattr(dtype, "dtype") else dtype
  if np.issubdtype(dtype, np.integer):
    return np.full(shape, np.iinfo(dtype).min, dtype)
  return np.full(shape, np.nan, dtype)


# Normwise relative error bounds, max|out - ref| <= TOL * max|ref|, keyed by
# (dtype name, op). Inputs are pre-rounded to the compute dtype and the
# reference accumulates in float32 at Precision.HIGHEST; measured maxima on
# CPU are about 3e-7 (f32) and 4e-3 (bf16, output rounding).
TOL = {
    ("float32", "fwd"): 1e-5, ("float32", "dx"): 1e-5, ("float32", "dw"): 1e-5,
    ("bfloat16", "fwd"): 1.6e-2, ("bfloat16", "dx"): 1.6e-2,
    ("bfloat16", "dw"): 1.6e-2,
    # the bias gradient: a sum over the batch, like dW's
    ("float32", "db"): 1e-5, ("bfloat16", "db"): 1.6e-2,
}


def assert_close(out, ref, dtype, op):
  """Dtype check first, then the normwise relative bound from TOL."""
  import jax.numpy as jnp
  assert out.dtype == ref.dtype, (out.dtype, ref.dtype)
  assert out.shape == ref.shape, (out.shape, ref.shape)
  o = np.asarray(jnp.asarray(out, jnp.float32))
  r = np.asarray(jnp.asarray(ref, jnp.float32))
  assert np.isfinite(o).all(), "non-finite output (an unwritten element?)"
  scale = max(np.abs(r).max(), 1e-30)
  err = np.abs(o - r).max() / scale
  bound = TOL[(np.dtype(dtype).name if not hasattr(dtype, "dtype") else
               jnp.dtype(dtype).name, op)]
  assert err <= bound, f"{op}: relative error {err:.3g} > {bound:.3g}"
