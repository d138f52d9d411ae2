"""The kernel benchmark: its smoke suite end to end, every implementation
verified before it is timed, and the floor/ideal columns."""

import json
import os
import subprocess
import sys

import pytest

from snn_jax import bench
from snn_jax.kernels import native_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_smoke_suite_binary(tmp_path):
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "bench_kernels.py"),
       "--suite=smoke", f"--output_dir={tmp_path}"],
      capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  (rows_file,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
  rows = json.loads(rows_file.read_text())
  timed = [r for r in rows if r.get("median_ms")]
  impls = {r["impl"] for r in timed}
  assert {"xla", "dense", "scipy"} <= impls
  if native_cpu.AVAILABLE:
    assert "native_cpu" in impls
    native = [r for r in timed if r["impl"] == "native_cpu"]
    assert {r["op"] for r in native} == set(bench.OPS)
    assert {r["block_size"] for r in native} == {1, 16}
  for r in timed:
    assert r["floor_ms"] > 0 and r["ideal_ms"] > 0
    if r["impl"] != "dense":
      assert r["ratio_to_floor"] == pytest.approx(r["median_ms"] / r["floor_ms"])
    if "max_rel_err" in r:
      assert r["max_rel_err"] <= 3e-2
  assert not [r for r in rows if r.get("note", "").startswith("wrong result")]
  assert any(p.name.endswith("_summary.txt") for p in tmp_path.iterdir())
  assert any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_unknown_impl_and_op_are_refused():
  with pytest.raises(ValueError, match="unknown impls"):
    bench.run_grid(bench.BenchConfig(impls=("cusparse",)))
  with pytest.raises(ValueError, match="unknown ops"):
    bench.run_grid(bench.BenchConfig(ops=("transpose",)))


def test_accelerator_suites_name_only_supported_kernels():
  """The device suites (one command each on a GPU/TPU) ask only for block
  sizes the kernels take, and span densities 0.01-0.5 with both dtypes."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import bench_kernels
  from snn_jax.kernels import mosaic_gpu, pallas_gpu, pallas_tpu
  gpu, tpu = bench_kernels.SUITES["gpu"], bench_kernels.SUITES["tpu"]
  assert set(gpu.block_sizes) == set(pallas_gpu.BLOCK_SIZES)
  assert set(mosaic_gpu.BLOCK_SIZES) <= set(gpu.block_sizes)
  assert all(pallas_tpu.supports(bs) for bs in tpu.block_sizes)
  for suite in (gpu, tpu):
    assert min(suite.densities) == 0.01 and max(suite.densities) == 0.5
    assert set(suite.dtypes) == {"float32", "bfloat16"}
    assert "dense" in suite.impls and "pallas" in suite.impls


def test_verify_tolerance_follows_platform_precision():
  assert bench.verify_tolerance("cpu", "float32") == 1e-4
  assert bench.verify_tolerance("gpu", "float32") == 5e-3  # tf32 operands
  assert bench.verify_tolerance("tpu", "float32") == 3e-2  # bf16 passes
  assert bench.verify_tolerance("gpu", "bfloat16") == 3e-2


def test_mosaic_gpu_rows_off_gpu_are_reported_not_timed():
  rows = bench.run_grid(bench.BenchConfig(
      sizes=(128,), batches=(16,), densities=(0.5,), block_sizes=(64,),
      impls=("mosaic_gpu",), ops=("fwd", "dx"), repeats=1, min_seconds=0.0),
      log=lambda s: None)
  assert {r["op"] for r in rows} == {"fwd", "dx"}
  assert all(r["median_ms"] is None and r["note"].startswith("unsupported")
             for r in rows)
