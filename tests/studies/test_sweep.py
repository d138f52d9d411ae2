"""The sweep: grid rows with metrics, error rows, plots, correlations."""

import os

import numpy as np
import pytest

from snn_jax.studies import SWEEP, SweepConfig, correlations, load_rows, run_sweep
from snn_jax.training import TrainConfig
from snn_jax.nn import ModelConfig
from snn_jax.training import RunConfig
from tests.conftest import REPO_ROOT


pytestmark = pytest.mark.standard_promotion


@pytest.mark.slow
def test_sweep_grid(tmp_path):
  base = TrainConfig(model=ModelConfig(hidden=(64,)),
                     run=RunConfig(epochs=1, batch_size=64, progress=False))
  cfg = SweepConfig(base=base, topologies=("erdos_renyi", "circulant", "ramanujan"),
                    densities=(0.25, 0.02), seeds=(0, 1))
  summary = run_sweep(cfg, str(tmp_path))
  rows = load_rows(SWEEP, str(tmp_path))
  assert len(rows) == summary["runs"] == 12 and summary["runs_finished"] == 8
  ok = [r for r in rows if not r["error"]]
  bad = [r for r in rows if r["error"]]
  # At density 0.02 the 64->10 layer cannot hold a circulant (degree 0) and
  # no projective plane reaches it: those runs are error rows, not crashes.
  assert {(r["topology"], r["requested_density"]) for r in bad} == {
      ("circulant", 0.02), ("ramanujan", 0.02)}
  assert all("degree 0" in r["error"] or "out of reach" in r["error"] for r in bad)
  for r in ok:
    assert 0 < r["final_test_acc"] <= 1 and 0 <= r["spectral_gap"] <= 1
    assert r["algebraic_connectivity"] >= 0
    assert abs(r["density"] - r["requested_density"]) < 0.3 * r["requested_density"]
  for name in ("sweep.csv", "sweep.json", "accuracy_vs_density.png",
               "accuracy_vs_expansion.png"):
    assert os.path.getsize(tmp_path / name) > 100
  assert sorted(os.listdir(tmp_path / "runs"))[0] == "circulant_d0.25_s0"
  c = correlations(rows, "spectral_gap")
  assert c["n"] == 8 and -1 <= c["spearman"] <= 1
  assert summary["correlations"]["spectral_gap"] == c
  assert {(f["topology"], f["requested_density"]) for f in summary["failed"]} \
      == {("circulant", 0.02), ("ramanujan", 0.02)}
  acc = {(a["topology"], a["requested_density"]): a for a in summary["accuracy"]}
  assert acc[("erdos_renyi", 0.25)]["runs"] == 2
  assert acc[("erdos_renyi", 0.25)]["mean"] == pytest.approx(np.mean(
      [r["final_test_acc"] for r in ok if (r["topology"], r["requested_density"])
       == ("erdos_renyi", 0.25)]))
  # a second pass skips every finished run and reports the same rows
  again = run_sweep(cfg, str(tmp_path))
  assert again["accuracy"] == summary["accuracy"]


def test_correlations_known_values():
  rows = [{"final_test_acc": a, "m": m, "error": ""}
          for a, m in [(0.1, 1.0), (0.2, 2.0), (0.3, 3.0), (0.4, 5.0)]]
  c = correlations(rows, "m")
  assert c["spearman"] == pytest.approx(1.0)
  assert 0.9 < c["pearson"] < 1.0
  assert np.isnan(correlations(rows[:2], "m")["spearman"])


@pytest.mark.slow
def test_sweep_binary_separate_processes(tmp_path):
  import json
  import subprocess
  import sys
  r = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "sweep.py"),
       f"--workdir={tmp_path}", "--topologies=erdos_renyi,circulant",
       "--densities=0.25", "--seeds=0,1", "--processes=2", "--hidden=32",
       "--epochs=1", "--noprogress"], capture_output=True, text=True,
      timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "accuracy vs spectral_gap" in r.stdout
  with open(tmp_path / "sweep.json") as f:
    rows = json.load(f)
  assert len(rows) == 4 and not any(row["error"] for row in rows)
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "sweep.py"),
       f"--workdir={tmp_path}/x", "--topologies=nope"], capture_output=True,
      text=True, timeout=600)
  assert bad.returncode != 0 and "unknown topologies" in bad.stderr
