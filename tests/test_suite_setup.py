"""The suite's own set-up (tests/conftest.py)."""

import os

import jax
import pytest

from tests import conftest


def test_a_shared_compilation_cache_is_locked():
  """The compilation cache the suite makes and shares between its processes
  (xdist's workers inherit it through the environment) is read and written
  under JAX's file lock, which a size limit enables: unlocked, a process
  can read an entry that another is still writing."""
  cache_dir = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  if not os.path.basename(cache_dir).startswith("snn_jax_tests_jit_cache_"):
    assert conftest._OWN_JIT_CACHE is None
    pytest.skip("the suite runs with a compilation cache of the caller's "
                "(JAX_COMPILATION_CACHE_DIR) or, without filelock, none")
  assert int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]) > 0
  assert jax.config.values["jax_compilation_cache_max_size"] > 0
