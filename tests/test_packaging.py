"""The package installs snn_jax.kernels without a top-level 'kernels'."""

import subprocess
import sys

import pytest


def test_kernels_subpackage_and_no_top_level(tmp_path):
  code = ("import importlib.util, snn_jax, snn_jax.kernels;"
          "assert importlib.util.find_spec('kernels') is None;"
          "print(snn_jax.__version__)")
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip()


@pytest.mark.slow
def test_importing_snn_jax_does_not_import_tensorflow(tmp_path):
  code = ("import sys, snn_jax, snn_jax.topology, snn_jax.analysis;"
          "assert 'tensorflow' not in sys.modules")
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
