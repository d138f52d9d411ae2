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


def _peers(*args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "peers.py"), *args],
      capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_peer_benchmark_verifies_every_peer_before_timing_it(tmp_path):
  """benchmarks/peers.py end to end at a tiny shape: every peer either is
  timed after agreeing with the float64 reference (forward, and dX and dW
  for the training layer) or says why it was skipped (not installed);
  ideal and x-ideal come from the dense row of the same run."""
  out = tmp_path / "peers.json"
  # One round: each round starts a fresh process per peer and op (67 s of
  # the suite's time with the default three).
  r = _peers(f"--out={out}", "--shapes=96:8:0.2", "--repeats=1",
             "--min_seconds=0", "--rounds=1")
  assert r.returncode == 0, r.stderr[-3000:]
  rows = json.loads(out.read_text())["rows"]
  import importlib.util
  for row in rows:
    if "median_ms" in row:
      assert row["max_rel_err"] <= 1e-4
      assert row["x_ideal"] == pytest.approx(row["median_ms"] / row["ideal_ms"])
    else:
      missing = importlib.util.find_spec(
          "sparseprop" if row["peer"] == "sparseprop" else "torch") is None
      assert missing and row["skipped"].startswith("not installed"), row
  timed = {(r["peer"], r["op"]) for r in rows if "median_ms" in r}
  assert {("snn_jax", "fwd"), ("snn_jax", "train"), ("snn_jax_free_layouts", "fwd"),
          ("snn_jax_free_layouts", "train"), ("jax_dense", "fwd"),
          ("jax_dense", "train"), ("jax_bcsr", "fwd"), ("scipy", "fwd")} <= timed
  # The free-layout peer takes X (and dY) and gives Y (and dX) feature-major,
  # as the native kernel works; the plain one has no layouts to report.
  free = {r["op"]: r["layouts"] for r in rows if r["peer"] == "snn_jax_free_layouts"}
  if native_cpu.AVAILABLE:
    assert free["fwd"] == {"inputs": [[1, 0]], "outputs": [[1, 0]]}
    assert free["train"]["inputs"] == [[1, 0], [1, 0]]
    assert free["train"]["outputs"][:2] == [[1, 0], [1, 0]]
  assert all("layouts" not in r for r in rows if r["peer"] == "snn_jax")
  assert {r["op"] for r in rows} == {"fwd", "train"}


def test_host_index_arrays_benchmark_times_three_placements_of_one_result(tmp_path):
  """benchmarks/host_index_arrays.py at a tiny shape: the three ways of
  handing bsmm its matrix give the same bits (the script checks) and each
  is timed."""
  out = tmp_path / "host.json"
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "host_index_arrays.py"),
       "--shape=64:8:0.1", str(out)], capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  rows = json.loads(out.read_text())["rows"]
  assert [row["how"] for row in rows] == [
      "host_arrays_as_argument", "device_put_once", "closed_over"]
  for row in rows:
    assert 0 < row["min_ms"] <= row["p25_ms"] <= row["median_ms"] <= row["p75_ms"]
    assert row["calls"] == 3000


def test_peer_benchmark_refuses_unknown_peers_and_bad_shapes(tmp_path):
  r = _peers(f"--out={tmp_path / 'x.json'}", "--peers=snn_jax,mkl")
  assert r.returncode == 2 and "unknown peers ['mkl']" in r.stderr
  r = _peers(f"--out={tmp_path / 'x.json'}", "--shapes=4096:256")
  assert r.returncode == 2 and "is not n:batch:density" in r.stderr
  assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not native_cpu.AVAILABLE, reason=native_cpu.UNAVAILABLE_REASON)
def test_bs1_breakdown_checks_the_kernels_and_times_every_part(tmp_path):
  """benchmarks/bs1_breakdown.py at a tiny shape: the resident-operand
  kernels agree with the float64 reference (it refuses to time them
  otherwise, and refuses a compiled module that copies the operands), and
  every part of the op is timed; with a roofline file, each part gets its
  fraction of the bound."""
  roofline = tmp_path / "roofline.json"
  bound = {"fwd": 0.01, "dx": 0.01, "dw": 0.02, "train": 0.04, "compute_ms": 0.005}
  roofline.write_text(json.dumps({"shapes": [
      {"n": 96, "batch": 16, "density": 0.2, "bound_ms": bound}]}))
  out = tmp_path / "bd.json"
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "bs1_breakdown.py"),
       "--shapes=96:16:0.2", "--rounds=1", f"--roofline={roofline}",
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  (row,) = json.loads(out.read_text())["rows"]
  assert set(row["ms"]) == {"op_fwd", "kernel_fwd_batch_major", "op_train",
                            "kernel_fwd", "kernel_dx", "kernel_dw", "layout_in"}
  assert all(v > 0 for v in row["ms"].values())
  assert max(row["kernel_rel_err"].values()) <= 1e-4
  assert row["fraction_of_bound"]["kernel_fwd"] == pytest.approx(
      bound["fwd"] / row["ms"]["kernel_fwd"])


@pytest.mark.skipif(not native_cpu.AVAILABLE, reason=native_cpu.UNAVAILABLE_REASON)
def test_fused_backward_benchmark_checks_bits_and_times_each_form(tmp_path):
  """benchmarks/fused_backward.py at a tiny shape: it times the three forms
  of the block-size-1 backward only after checking that they give the same
  bits, and writes their ratios."""
  out = tmp_path / "fb.json"
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "fused_backward.py"),
       "--groups=1", f"--out={out}", "90,70,16,0.2"], cwd=ROOT,
      capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  (row,) = json.loads(out.read_text())["rows"]
  assert (row["n_in"], row["n_out"], row["batch"]) == (90, 70, 16)
  assert all(row[f"{k}_ms"] > 0 for k in ("separate", "one_call_split", "fused"))
  assert row["fused_over_separate"] == pytest.approx(
      row["fused_ms"] / row["separate_ms"])


def test_roofline_bounds_follow_the_model():
  """benchmarks/roofline_probe.py's bound on hand-made numbers: the L2
  bandwidth of the largest working set whose per-thread share fits half
  of L2; memory bytes per stored weight of one gathered row (fwd, dX) or
  two (dW), against 2 * batch flops each at the FMA peak."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "roofline_probe", os.path.join(ROOT, "benchmarks", "roofline_probe.py"))
  probe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(probe)
  measured = {"threads_all": 2, "read_gbs": [
      {"bytes": 1 << 20, "one_thread": 90.0, "all_threads": 200.0},
      {"bytes": 4 << 20, "one_thread": 80.0, "all_threads": 150.0}]}
  assert probe.l2_bandwidth(measured, 1 << 20) == (200.0, 1 << 20)
  assert probe.l2_bandwidth(measured, 4 << 20) == (150.0, 4 << 20)
  n, batch, density, gbs, gflops = 1000, 100, 0.01, 100.0, 50.0
  b = probe.bounds(n, batch, density, gbs, gflops)
  nnz = 10_000
  memory_fwd = (nnz * 400 + 4 * n * batch) / 100e9 * 1e3
  compute = 2 * nnz * batch / 50e9 * 1e3
  assert b["fwd"] == pytest.approx(max(memory_fwd, compute))
  assert b["dx"] == b["fwd"]
  assert b["dw"] == pytest.approx(max((2 * nnz * 400 + 4 * nnz) / 100e9 * 1e3,
                                      compute))
  assert b["train"] == pytest.approx(2 * b["fwd"] + b["dw"])


@pytest.mark.skipif(not native_cpu.AVAILABLE, reason=native_cpu.UNAVAILABLE_REASON)
def test_ab_native_times_builds_side_by_side_in_each_operand_mode(tmp_path):
  """benchmarks/ab_native.py at a tiny shape, the loaded build against
  itself: resident operands (compiled with XLA's layouts) and batch-major
  ones around the call give the same bits, and every op gets a time and a
  ratio to the first build."""
  so = native_cpu._ext.__file__
  out = tmp_path / "ab.json"
  r = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "ab_native.py"),
       f"a={so}:resident", f"b={so}:feature_major", "--shapes=96:16:0.2:1",
       str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  data = json.loads(out.read_text())
  assert data["builds"]["a"]["operands"] == "resident"
  assert {row["op"] for row in data["rows"]} == {"fwd", "dx", "dw"}
  for row in data["rows"]:
    assert row["same_bits_as_a"] == {"a": True, "b": True}
    assert row["a_ms"] > 0 and row["b_ms"] > 0
    assert row["b_over_a"] == pytest.approx(row["b_ms"] / row["a_ms"])
  bad = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "ab_native.py"),
       f"a={so}:sideways", f"b={so}", str(out)], cwd=ROOT,
      capture_output=True, text=True, timeout=600)
  assert bad.returncode != 0 and ":resident" in bad.stderr
