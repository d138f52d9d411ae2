"""Shared test configuration: strict JAX numerics, 4 CPU devices, helpers.

The device count must be set before jax initialises its backends.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "datasets", "mnist")


@pytest.fixture
def rng(request):
  """A NumPy generator seeded from the test's name (fresh, reproducible)."""
  seed = abs(hash(request.node.nodeid)) % (2**31)
  return np.random.default_rng(seed)


@pytest.fixture
def key(request):
  seed = abs(hash(request.node.nodeid)) % (2**31)
  return jax.random.key(seed)


def poisoned(shape, dtype):
  """An array of NaN (floats) or iinfo.min (ints): catches unwritten output."""
  dtype = np.dtype(dtype) if not hasattr(dtype, "dtype") else dtype
  if np.issubdtype(dtype, np.integer):
    return np.full(shape, np.iinfo(dtype).min, dtype)
  return np.full(shape, np.nan, dtype)
