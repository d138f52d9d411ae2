"""The analyze_topology pipeline: library entry point and the binary."""

import json
import os
import subprocess
import sys

import pytest

from snn_jax import analysis
from tests.conftest import REPO_ROOT



@pytest.mark.slow
def test_analyze_writes_table_and_figures(tmp_path):
  cfg = analysis.AnalyzeConfig(topologies=["erdos_renyi", "radixnet"],
                               widths=[64, 128, 64], density=0.25, seed=1)
  rows = analysis.analyze(cfg, str(tmp_path))
  assert {r["name"] for r in rows} == {"erdos_renyi", "radixnet"}
  assert len(rows) == 6  # two layers + one network row each
  saved = json.loads((tmp_path / "metrics.json").read_text())
  assert saved == json.loads(json.dumps(rows))
  header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
  assert "spectral_gap" in header and "algebraic_connectivity" in header
  for name in ("erdos_renyi", "radixnet"):
    for kind in ("mask", "degrees"):
      png = tmp_path / f"{name}_{kind}.png"
      assert png.stat().st_size > 1000
  text = analysis.format_table(rows, ["name", "scope", "density"])
  assert "erdos_renyi" in text and "network" in text


def test_analyze_errors():
  bad = analysis.AnalyzeConfig(topologies=["nope"], widths=[8, 8], density=0.5)
  with pytest.raises(ValueError, match="unknown topology"):
    analysis.analyze(bad)
  impossible = analysis.AnalyzeConfig(topologies=["ramanujan"],
                                      widths=[1024, 10], density=0.1)
  with pytest.raises(ValueError, match="out of reach"):
    analysis.analyze(impossible)
  rows = analysis.analyze(analysis.AnalyzeConfig(
      topologies=["ramanujan", "xnet"], widths=[1024, 10], density=0.1,
      skip_errors=True, plots=False))
  assert rows[0]["scope"] == "error" and "out of reach" in rows[0]["error"]
  assert rows[1]["name"] == "xnet"


@pytest.mark.slow
def test_binary_runs(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "analyze_topology.py"),
       "--topology=butterfly,clos", "--widths=64,64,64", "--density=0.125",
       f"--output_dir={tmp_path}", "--noplots"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert "butterfly" in out.stdout and "clos" in out.stdout
  assert (tmp_path / "metrics.csv").exists()
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "analyze_topology.py"),
       "--topology=nope"], capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "unknown topology" in bad.stderr
