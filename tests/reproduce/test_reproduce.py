"""Reproduction grids at tiny sizes."""

import csv
import dataclasses
import json
import math
import os

import hypothesis
import hypothesis.strategies
import numpy as np
import pytest

from snn_jax import data, studies, topology
from snn_jax.studies import (DEEP_INIT, DeepInitConfig, load_rows,
                             reporting_only, run_deep_init)
from snn_jax.training import TrainConfig, diverged_record, train_and_evaluate
from tests.conftest import REPO_ROOT


pytestmark = pytest.mark.standard_promotion


@pytest.mark.slow
def test_deep_init_grid_rows_and_files(tmp_path):
  base = TrainConfig(model=ModelConfig(topology=TopologyConfig(density=0.3)),
                     run=RunConfig(epochs=1, batch_size=64, progress=False))
  cfg = DeepInitConfig(base=base, depths=(2, 3), width=16,
                       inits=("dense_he", "sparse_he"), seeds=(0,))
  summary = run_deep_init(cfg, str(tmp_path))
  rows = load_rows(DEEP_INIT, str(tmp_path))
  assert summary["runs"] == summary["runs_finished"] == 4
  assert [(s["depth"], s["init"], s["runs"]) for s in summary["by_depth"]] == [
      (2, "dense_he", 1), (2, "sparse_he", 1), (3, "dense_he", 1),
      (3, "sparse_he", 1)]
  assert [(r["depth"], r["init"]) for r in rows] == [
      (2, "dense_he"), (2, "sparse_he"), (3, "dense_he"), (3, "sparse_he")]
  assert all(0 <= r["final_test_acc"] <= 1 and not r["diverged"] for r in rows)
  assert all(abs(r["density"] - 0.3) < 0.15 for r in rows)
  for name in ("deep_init.csv", "deep_init.json", "accuracy_vs_depth.png",
               "summary.json", "provenance.json"):
    assert os.path.getsize(tmp_path / name) > 100
  with open(tmp_path / "runs" / "depth3_sparse_he_s0" / "config.json") as f:
    assert json.load(f)["model"]["hidden"] == [16, 16, 16]


@pytest.mark.slow
def test_deep_init_records_divergence(tmp_path):
  good = data.load("digits")
  poisoned = dataclasses.replace(good, x_train=np.full_like(good.x_train, np.nan))
  base = TrainConfig(run=RunConfig(epochs=1, batch_size=64, progress=False))
  cfg = DeepInitConfig(base=base, depths=(2,), width=16, inits=("dense_he",),
                       seeds=(0,))
  summary = run_deep_init(cfg, str(tmp_path), dataset=poisoned)
  (row,) = load_rows(DEEP_INIT, str(tmp_path))
  assert row["diverged"] and "non-finite" in row["error"]
  assert row["final_test_acc"] is None
  assert summary["by_depth"] == [] and summary["runs_finished"] == 0
  assert summary["failed"] == [{"depth": 2, "init": "dense_he", "seed": 0,
                                "error": row["error"]}]
  # The divergence is recorded in the run's folder, so a report over the
  # committed results (no checkpoints, no process memory) gives the same
  # diverged row instead of calling the run unfinished.
  run_dir = str(tmp_path / "runs" / "depth2_dense_he_s0")
  record = diverged_record(run_dir)
  assert record["epoch"] == 1 and record["error"][:200] == row["error"]
  with reporting_only():
    again = run_deep_init(cfg, str(tmp_path), dataset=poisoned)
  (reported,) = load_rows(DEEP_INIT, str(tmp_path))
  assert reported["diverged"] and reported["error"] == row["error"]
  assert again["failed"] == summary["failed"]
  # A run that completes later (here: started over on good data) drops it.
  train_and_evaluate(cfg.base.override({"model.hidden": (16, 16),
                                        "model.init": "dense_he"}),
                     run_dir, dataset=good, overwrite=True)
  assert diverged_record(run_dir) is None
  assert os.path.exists(os.path.join(run_dir, "summary.json"))


def _partial_report_rows():
  """Rows as a report over a half-finished grid sees them: a group of three
  equal accuracies (0.1 three times averages to 0.1 + 2e-17), a group with
  one finished seed beside two unfinished ones, and one diverged run."""
  from snn_jax.studies import NOT_FINISHED
  def row(depth, init, seed, acc, error=""):
    return {"depth": depth, "init": init, "seed": seed, "final_test_acc": acc,
            "error": error, "hidden_family": "erdos_renyi",
            "init_moment_last_hidden": 0.5 + seed}
  return ([row(8, "dense_he", s, 0.1) for s in range(3)]
          + [row(64, "sparse_he", 0, 0.7667)]
          + [row(64, "sparse_he", s, None, NOT_FINISHED) for s in (1, 2)]
          + [row(8, "sparse_he", 0, None, "non-finite loss")])


def test_report_plots_of_partial_groups(tmp_path):
  """Error bars of groups of one seed or of equal values are drawn (never
  negative after rounding) and unfinished runs are left out, so a report
  over a grid still running does not stop at its plots."""
  from snn_jax.reproduce import isakov2020 as isakov
  from snn_jax.reproduce import _common as common
  from snn_jax.studies.deep_init import plot_deep_init
  rows = _partial_report_rows()
  assert np.mean([0.1, 0.1, 0.1]) != 0.1  # the rounding this guards against
  plot_deep_init(rows, str(tmp_path / "depth.png"))
  finished = [r for r in rows if r["final_test_acc"] is not None]
  stats = common.group_stats(finished, ("hidden_family", "depth", "init"))
  assert [(s["depth"], s["init"], s["runs"]) for s in stats] == [
      (8, "dense_he", 3), (64, "sparse_he", 1)]
  assert stats[1]["ci_low"] == stats[1]["ci_high"] == 0.7667
  isakov.plot_dead_units(finished, stats, str(tmp_path / "dead.png"))
  assert os.path.getsize(tmp_path / "depth.png") > 1000
  assert os.path.getsize(tmp_path / "dead.png") > 1000


@pytest.mark.parametrize("bad", [dict(depths=()), dict(depths=(0,)),
                                 dict(width=0), dict(inits=("xavier",)),
                                 dict(seeds=())])
def test_deep_init_config_validation(bad):
  with pytest.raises(ValueError):
    DeepInitConfig(base=TrainConfig(), **bad)


# --- statistics over seeds ---------------------------------------------------

from snn_jax.reproduce import (PAPERS, alford2019, bourely2017, isakov2020,  # noqa: E402
                               liu2020, liu2020_paper, mean_ci, parts,
                               reproduction, seed_bootstrap_corr)
from snn_jax.reproduce import _common  # noqa: E402


def test_mean_ci_matches_t_interval(rng):
  import scipy.stats
  x = rng.normal(3.0, 2.0, size=7)
  ci = mean_ci(x)
  lo, hi = scipy.stats.t.interval(0.95, 6, loc=x.mean(), scale=scipy.stats.sem(x))
  assert ci["n"] == 7 and np.isclose(ci["mean"], x.mean())
  assert np.isclose(ci["low"], lo) and np.isclose(ci["high"], hi)
  one = mean_ci([0.7])
  assert one["low"] == one["high"] == 0.7
  assert np.isnan(mean_ci([])["mean"])


def test_paired_difference_pairs_by_seed(rng):
  acc = rng.uniform(0.5, 1.0, size=(2, 2, 5))  # [depth, init, seed]
  rows = [{"depth": d, "init": i, "seed": s, "final_test_acc": float(acc[d, k, s]),
           "error": ""}
          for d in range(2) for k, i in enumerate(("he", "nf")) for s in range(5)]
  rows[7]["error"] = "FloatingPointError"  # depth 0, nf, seed 2 failed
  got = _common.paired_difference(rows, "init", "nf", "he", depth=0)
  diffs = [acc[0, 1, s] - acc[0, 0, s] for s in (0, 1, 3, 4)]
  expected = studies.bootstrap_mean_ci(diffs)
  assert got["n"] == 4
  assert got["mean"] == pytest.approx(expected["mean"])
  assert got["low"] == pytest.approx(expected["low"])
  assert min(diffs) <= got["low"] <= got["high"] <= max(diffs)
  assert got["higher_in"] == sum(d > 0 for d in diffs)
  assert got["verdict"] == studies.comparison_verdict(
      [acc[0, 1, s] for s in (0, 1, 3, 4)], [acc[0, 0, s] for s in (0, 1, 3, 4)])
  assert _common.paired_difference(rows, "init", "nf", "he", depth=1)["n"] == 5
  assert _common.paired_difference(rows, "init", "xx", "he")["n"] == 0


def _grid_rows(rng, seeds, slope, noise):
  rows = []
  for s in seeds:
    for x in np.linspace(0, 1, 6):
      rows.append({"seed": s, "x": float(x),
                   "final_test_acc": float(slope * x + rng.normal(0, noise)),
                   "error": ""})
  return rows


def test_seed_bootstrap_corr_interval_covers_and_separates(rng):
  strong = seed_bootstrap_corr(_grid_rows(rng, range(5), 1.0, 0.05), "x")
  assert strong["n"] == 30 and strong["n_groups"] == 5
  assert strong["low"] <= strong["estimate"] <= strong["high"]
  assert strong["low"] > 0.8
  null = seed_bootstrap_corr(_grid_rows(rng, range(5), 0.0, 1.0), "x",
                             method="pearson")
  assert null["low"] < 0 < null["high"]


def test_seed_bootstrap_corr_skips_errors_and_needs_rows(rng):
  rows = _grid_rows(rng, range(3), 1.0, 0.1)
  rows.append({"seed": 0, "x": 5.0, "final_test_acc": None, "error": "ValueError: x"})
  rows.append({"seed": 1, "x": float("nan"), "final_test_acc": 0.5, "error": ""})
  assert seed_bootstrap_corr(rows, "x")["n"] == 18
  few = seed_bootstrap_corr(rows[:2], "x")
  assert np.isnan(few["estimate"]) and few["n"] == 2
  one_seed = seed_bootstrap_corr([r for r in rows if r["seed"] == 0], "x")
  assert np.isfinite(one_seed["estimate"]) and np.isnan(one_seed["low"])
  with pytest.raises(ValueError, match="spearman"):
    seed_bootstrap_corr(rows, "x", method="kendall")


def test_guarded_turns_build_errors_into_rows():
  def bad():
    raise ValueError("cannot build this layer")
  assert _common.guarded(bad)["error"].startswith("ValueError: cannot build")
  assert _common.guarded(lambda: {"a": 1}) == {"a": 1, "error": ""}


# --- the four papers at tiny sizes ---------------------------------------------

@pytest.fixture(scope="module")
def digits():
  return data.load("digits", seed=0)


def _base():
  return TrainConfig(data=DataConfig(name="digits", split_seed=0),
                     run=RunConfig(epochs=1, batch_size=64, progress=False))


def _read(path):
  with open(path) as f:
    return json.load(f)


@pytest.mark.slow
def test_bourely2017_grid_and_correlations(tmp_path, digits):
  cfg = dataclasses.replace(bourely2017.reduced_config(_base()),
                            base=_base(), hidden=(32, 32),
                            topologies=("erdos_renyi", "circulant"),
                            densities=(0.1, 0.3), seeds=(0, 1),
                            control_topologies=("circulant",))
  summary = bourely2017.run(cfg, str(tmp_path), dataset=digits)
  rows = _read(tmp_path / "bourely2017_grid.json")
  assert len(rows) == 12 and all(r["error"] == "" for r in rows)
  assert sum(r["inputs"] == "permuted" for r in rows) == 4
  control = summary["permutation_control"]
  assert [(c["topology"], c["requested_density"], c["runs"]) for c in control] \
      == [("circulant", 0.1, 2), ("circulant", 0.3, 2)]
  by = {(r["inputs"], r["requested_density"], r["seed"]): r["final_test_acc"]
        for r in rows if r["topology"] == "circulant"}
  assert control[0]["permuted_minus_natural"] == pytest.approx(np.mean(
      [by[("permuted", 0.1, s)] - by[("natural", 0.1, s)] for s in (0, 1)]))
  for r in rows:
    assert r["density_matched"]
    assert 0 <= r["final_test_acc"] <= 1 and r["spectral_gap"] > 0
    assert abs(r["sparse_density"] - r["requested_density"]) < 0.1
  corr = summary["correlations"]
  assert set(corr["overall"]) == {"density", "spectral_gap",
                                  "algebraic_connectivity"}
  assert corr["overall"]["density"]["spearman"]["n"] == 8  # natural inputs only
  assert set(corr["within_density"]) == {"0.1", "0.3"}
  assert len(summary["accuracy"]) == 4
  assert _read(tmp_path / "provenance.json")["data"]["name"] == "digits"
  for name in ("accuracy_vs_density.png", "accuracy_vs_expansion.png",
               "summary.json", "accuracy_stats.csv"):
    assert os.path.getsize(tmp_path / name) > 100
  # The saved topology of a run is the one the grid built.
  from snn_jax import studies, training
  run = tmp_path / "runs" / "circulant_d0.3_s1"
  stack = studies.stack_of(str(run), chained=True)
  assert [t.name for t in stack] == ["circulant", "circulant", "dense"]
  # given to the run as objects: recorded by fingerprint, nothing else
  cfg = _read(run / "train" / "config.json")
  assert cfg["given_topologies"] and cfg["model"]["topology"]["directory"] is None
  assert training.restore_model(str(run / "train")).topologies() == stack


@pytest.mark.slow
def test_liu2020_methods_and_nnstd(tmp_path, digits):
  base = _base().override({"run.epochs": 2})  # SET rewires between epochs
  cfg = dataclasses.replace(liu2020.reduced_config(base), base=base,
                            hidden=(48, 48), epsilon=4, seeds=(0, 1),
                            evolution_epochs=2)
  summary = liu2020.run(cfg, str(tmp_path), datasets={"digits": digits})
  rows = _read(tmp_path / "liu2020_runs.json")
  assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
      (m, s) for m in liu2020.METHODS for s in (0, 1))
  a = summary["datasets"]["digits"]
  dense = next(r for r in rows if r["method"] == "dense")
  sparse = next(r for r in rows if r["method"] == "set")
  assert dense["density"] == 1.0 and sparse["density"] < 0.6
  assert a["set_minus_dense"]["n"] == 2
  assert 0 < a["nnstd_random_pairs"]["mean"] <= 1
  assert 0 < a["nnstd_set_final_pairs"]["mean"] <= 1
  assert a["set_nnstd_final_to_start"]["mean"] > 0  # SET rewired
  assert os.path.isdir(tmp_path / "digits" / "set_evolution")
  assert os.path.getsize(tmp_path / "accuracy_by_method.png") > 100


@pytest.mark.slow
def test_isakov2020_depth_and_ranking(tmp_path, digits):
  cfg = dataclasses.replace(
      isakov2020.reduced_config(_base()), base=_base(), depths=(2, 4),
      depth_width=16, depth_density=0.3, inits=("dense_he", "sparse_he"),
      depth_seeds=(0,), depth_epochs=1, ranking_hidden=(32, 32, 32), fan_in=4,
      topologies=("erdos_renyi", "butterfly", "block_diag_shuffle"),
      seeds=(0, 1), dead_depths=(3,), dead_fan_in=1, dead_seeds=(0, 1))
  summary = isakov2020.run(cfg, str(tmp_path), dataset=digits)
  assert len(summary["depth"]) == 4
  rows = _read(tmp_path / "dead_units" / "dead_units.json")
  assert [(r["hidden_family"], r["depth"], r["seed"], r["init"]) for r in rows] == [
      ("erdos_renyi", 3, s, i) for s in (0, 1)
      for i in ("sparse_he", "neurofabric")] + [
      ("fixed_fan_in", 3, s, "sparse_he") for s in (0, 1)]
  assert all(not r["error"] and 0 <= r["final_test_acc"] <= 1 for r in rows)
  dead, control = rows[:4], rows[4:]
  # At fan-in 1 about a third of each Erdős–Rényi hidden layer has no input;
  # the fixed-fan-in control has none.
  assert all(0 < r["live_fraction_hidden"] < 1 and r["dead_units"] > 0
             for r in dead)
  assert all(r["live_fraction_hidden"] == 1 and r["dead_units"] == 0
             for r in control)
  for a, b in zip(dead[::2], dead[1::2]):
    # The input layer has only live inputs: both inits draw the same weights.
    assert a["init_moment_first"] == pytest.approx(b["init_moment_first"])
    assert a["init_moment_last_hidden"] > 0 and b["init_moment_last_hidden"] > 0
  paired = summary["dead_units"]["paired_differences"]
  assert [(p["depth"], p["init"], p["n"]) for p in paired] == [
      (3, "neurofabric", 2)]
  assert os.path.getsize(tmp_path / "dead_units" / "dead_units.png") > 100
  from snn_jax import studies
  runs = tmp_path / "ranking" / "runs"
  fly = studies.stack_of(str(runs / "butterfly_s1"))
  er = studies.stack_of(str(runs / "erdos_renyi_s1"))
  assert fly[0] == er[0] and fly[0].name == "erdos_renyi"  # shared input layer
  assert [t.name for t in fly[1:]] == ["butterfly", "butterfly", "dense"]
  ranked = summary["ranking"]
  assert sorted(s["topology"] for s in ranked) == ["block_diag_shuffle",
                                                  "butterfly", "erdos_renyi"]
  assert [s["rank"] for s in ranked] == [1, 2, 3]
  assert all(ranked[i]["mean"] >= ranked[i + 1]["mean"] for i in range(2))
  for s in ranked:
    assert 0 < s["requirements_score"] <= 1 and 0 < s["reachability"] <= 1
  assert set(summary["score_correlations"]) == set(isakov2020.SCORES)
  assert os.path.getsize(tmp_path / "ranking_vs_scores.png") > 100
  assert os.path.getsize(tmp_path / "depth" / "deep_init.csv") > 50


@pytest.mark.slow
def test_bourely2017_permutation_and_density_matching(digits):
  permuted, perm = bourely2017.permute_inputs(digits)
  assert sorted(perm) == list(range(64)) and not np.array_equal(perm, np.arange(64))
  np.testing.assert_array_equal(permuted.x_test[:, 5], digits.x_test[:, perm[5]])
  rows = [{"topology": "radixnet", "requested_density": 0.01, "seed": s,
           "sparse_density": 0.04, "density_matched": False, "spectral_gap": g,
           "algebraic_connectivity": g, "final_test_acc": a, "error": ""}
          for s, g, a in ((0, 0.1, 0.9), (1, 0.2, 0.8), (2, 0.3, 0.7))]
  within = bourely2017.analyse(rows)["within_density"]["0.01"]["spectral_gap"]
  assert within["n"] == 0  # the unmatched runs stay out


def test_isakov2020_scores_of_known_structures():
  from snn_jax import topology
  # A full butterfly system joins every input to every output by one path.
  fly = topology.make_stack("butterfly", [16, 16, 16], density=0.25, seed=0)
  s = isakov2020.data_free_scores(fly)
  assert s["reachability"] == 1.0 and s["path_uniformity"] == pytest.approx(1.0)
  # Block-diagonal layers without a shuffle never mix the groups.
  blocks = topology.make_stack("clos", [16, 16, 16], density=0.25, seed=0)
  bd = [topology.Topology(16, 16, *np.nonzero(np.kron(np.eye(4), np.ones((4, 4)))))
        for _ in range(2)]
  s_bd = isakov2020.data_free_scores(bd)
  assert s_bd["reachability"] == pytest.approx(0.25)
  assert s_bd["requirements_score"] < isakov2020.data_free_scores(
      blocks)["requirements_score"]


@pytest.mark.slow
def test_alford2019_matching_densities_and_instability(tmp_path, digits):
  cfg = dataclasses.replace(alford2019.reduced_config(_base()), base=_base(),
                            models=("mlp",), hidden=(32, 16),
                            densities=(0.125, 1 / 64), seeds=(0, 1))
  summary = alford2019.run(cfg, str(tmp_path), dataset=digits)
  rows = _read(tmp_path / "alford2019_runs.json")
  assert all(r["error"] == "" for r in rows), [r["error"] for r in rows]
  assert len(rows) == 2 * (1 + 3 * 2)
  for r in rows:
    if r["family"] != "dense" and r["requested_density"] > 0.1:
      assert r["hidden_density"] == pytest.approx(r["requested_density"], abs=0.02)
    assert r["density_matched"] == (
        abs(r["hidden_density"] / r["requested_density"] - 1) <= 0.1)
    assert r["max_drop"] >= 0
  # A RadiX-Net's 32 -> 16 layer cannot be sparser than 1/16: at 1/64 the
  # generator builds a denser one, which stays out of the statistics.
  radix = [r for r in rows if r["family"] == "radixnet"
           and r["requested_density"] == 1 / 64]
  assert all(not r["density_matched"] and r["hidden_density"] > 1.5 / 64
             for r in radix)
  assert {(u["family"], u["seed"]) for u in summary["unmatched"]} >= {
      ("radixnet", 0), ("radixnet", 1)}
  for s in summary["accuracy"]:
    assert s["runs"] == sum(
        1 for r in rows if r["density_matched"] and (
            r["model"], r["family"], r["requested_density"]) == (
            s["model"], s["family"], s["requested_density"]))
  assert not any(s["family"] == "radixnet" and s["requested_density"] == 1 / 64
                 for s in summary["accuracy"])
  # The pruned family's topology keeps the largest trained dense weights.
  from snn_jax import training
  w = training.restore_model(str(tmp_path / "mlp" / "s0" / "dense")).dense_weights()
  from snn_jax import studies
  t0 = studies.stack_of(str(tmp_path / "mlp" / "s0" / "pruned_d0.125"))[0]
  kept = np.abs(w["layer_0_weight"])[t0.rows, t0.cols]
  assert kept.min() >= np.quantile(np.abs(w["layer_0_weight"]), 0.85)
  diffs = summary["paired_differences"]
  assert {(d["family"], d["requested_density"]) for d in diffs} >= {
      (f, 0.125) for f in ("radixnet", "erdos_renyi")}
  assert ("radixnet", 1 / 64) not in {(d["family"], d["requested_density"])
                                      for d in diffs}
  assert all(d["model"] == "mlp" for d in diffs)
  by = {(r["family"], r["requested_density"], r["seed"]): r["final_test_acc"]
        for r in rows}
  d0 = next(d for d in diffs if d["family"] == "radixnet"
            and d["requested_density"] == 0.125)
  assert d0["mean"] == pytest.approx(np.mean(
      [by[("radixnet", 0.125, s)] - by[("pruned", 0.125, s)] for s in (0, 1)]))
  # the sign count and the verdict that can fail travel with the interval
  ahead = sum(by[("radixnet", 0.125, s)] > by[("pruned", 0.125, s)] for s in (0, 1))
  assert d0["higher_in"] == ahead and d0["verdict"] == studies.comparison_verdict(
      [by[("radixnet", 0.125, s)] for s in (0, 1)],
      [by[("pruned", 0.125, s)] for s in (0, 1)])
  assert d0["min"] <= d0["ci_low"] <= d0["mean"] <= d0["ci_high"] <= d0["max"]
  fams = {s["family"] for s in summary["accuracy"]}
  assert fams == {"dense", "pruned", "radixnet", "erdos_renyi"}
  for name in ("accuracy_vs_sparsity.png", "instability.png"):
    assert os.path.getsize(tmp_path / name) > 100


def _digits_28x28(digits):
  """The embedded digits upsampled 8x8 -> 24x24 and padded to 28x28: real,
  learnable images of MNIST's shape without the network."""
  def up(x):
    img = x.reshape(-1, 8, 8)
    img = np.kron(img, np.ones((1, 3, 3), img.dtype))
    return np.pad(img, ((0, 0), (2, 2), (2, 2))).reshape(len(x), -1)
  return dataclasses.replace(digits, x_train=up(digits.x_train),
                             x_test=up(digits.x_test))


@pytest.mark.slow
def test_alford2019_lenet5(tmp_path, digits):
  ds = _digits_28x28(digits)
  base = _base()
  cfg = dataclasses.replace(alford2019.reduced_config(base), base=base,
                            models=("lenet5",), lenet5_hidden=(40, 20),
                            lenet5_densities=(0.25,), lenet5_epochs=1,
                            families=("pruned", "radixnet"), seeds=(0, 1))
  summary = alford2019.run(cfg, str(tmp_path), dataset=ds)
  rows = _read(tmp_path / "alford2019_runs.json")
  assert all(r["error"] == "" for r in rows), [r["error"] for r in rows]
  assert {(r["model"], r["family"]) for r in rows} == {
      ("lenet5", "dense"), ("lenet5", "pruned"), ("lenet5", "radixnet")}
  from snn_jax import training
  from snn_jax import studies
  stack = studies.stack_of(str(tmp_path / "lenet5" / "s1" / "pruned_d0.25"))
  assert [(t.n_in, t.n_out) for t in stack] == [(1, 6), (6, 16), (400, 40),
                                                (40, 20), (20, 10)]
  assert stack[0].density == stack[1].density == stack[4].density == 1.0
  assert stack[2].density == pytest.approx(0.25, abs=0.01)
  model = training.restore_model(str(tmp_path / "lenet5" / "s1" / "pruned_d0.25" / "train"))
  assert model.topologies() == stack
  assert len(summary["paired_differences"]) == 1


def test_alford2019_max_drop():
  assert alford2019.max_drop([0.1, 0.5, 0.9]) == 0.0
  assert alford2019.max_drop([0.5, 0.9, 0.4, 0.95, 0.9]) == pytest.approx(0.5)
  assert alford2019.max_drop([0.3]) == 0.0


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_paper_configs_validate(paper):
  reduced = reproduction(paper, "reduced").make_config(
      TrainConfig(data=DataConfig(name="mnist")))
  assert len(reduced.seeds) >= 2
  with pytest.raises(ValueError, match="seed"):
    dataclasses.replace(reduced, seeds=(0,))


def test_one_registry_keyed_by_paper_scale_part():
  assert set(PAPERS) == {"bourely2017", "liu2020", "isakov2020", "alford2019"}
  for paper in PAPERS:
    assert parts(paper, "reduced") == ("main",)
    assert reproduction(paper, "paper").reports_only
    # reduced: from the committed rows where the statistics need no run
    # (Liu's NNSTD needs the SET runs' topologies)
    assert reproduction(paper, "reduced").reports_only == (paper != "liu2020")
  assert parts("liu2020", "paper") == ("figure4", "sparse_vs_dense")
  assert parts("alford2019", "paper") == ("main", "lenet5_sheet_budget")
  assert reproduction("liu2020", "paper").module is liu2020_paper
  with pytest.raises(ValueError, match="retired: --scale=paper"):
    reproduction("liu2020", "full")
  with pytest.raises(ValueError, match="the parts figure4, sparse_vs_dense"):
    reproduction("liu2020", "paper", "figure5")
  with pytest.raises(ValueError, match="the parts main, lenet5_sheet_budget"):
    reproduction("alford2019", "paper", "lenet5")
  with pytest.raises(ValueError, match="one part only"):
    reproduction("bourely2017", "paper", "lenet5")
  with pytest.raises(AttributeError, match="one registry"):
    import snn_jax.reproduce as r
    r.PAPER_SCALE  # noqa: B018




def _binary(*args):
  import subprocess
  import sys
  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "reproduce.py"), *args],
      capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_reproduce_binary_end_to_end(tmp_path):
  out = _binary("--paper=alford2019", f"--workdir={tmp_path}", "--dataset=digits",
                "--epochs=1", "--seeds=0,1", "--set=hidden=[32, 16]",
                "--set=densities=[0.25]", "--set=families=[\"radixnet\"]",
                "--set=models=[\"mlp\"]")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "alford2019: done" in out.stdout
  prov = _read(tmp_path / "provenance.json")
  assert prov["config"]["hidden"] == [32, 16] and prov["config"]["seeds"] == [0, 1]
  assert prov["config"]["base"]["run"]["epochs"] == 1 and "--paper=alford2019" in prov["command"]
  assert prov["versions"]["jax"] and prov["wall_seconds"] > 0
  rows = _read(tmp_path / "alford2019_runs.json")
  assert {r["family"] for r in rows} == {"dense", "radixnet"}


@pytest.mark.slow
def test_reproduce_binary_liu2020_reduced(tmp_path):
  """Regression: a summary with per-dataset statistics and no failed run
  (reduced liu2020) crashed the binary after the study had finished."""
  out = _binary("--paper=liu2020", f"--workdir={tmp_path}", "--epochs=2",
                "--seeds=0,1", "--set=hidden=[24, 24]", "--set=epsilon=4",
                "--set=evolution_epochs=2", '--set=datasets=["digits"]')
  assert out.returncode == 0, out.stderr[-2000:]
  assert "liu2020: done" in out.stdout and "failed" not in out.stdout
  assert _read(tmp_path / "summary.json")["failed"] == []


@pytest.mark.parametrize("args, match", [
    (["--set=widths=[3]"], "field=JSON with a field of AlfordConfig"),
    (["--set=densities=[0.5"], "not JSON"),
    (["--set=densities=[1.5]"], "densities must be in"),
    (["--seeds=0"], "at least two seeds"),
])
@pytest.mark.slow
def test_reproduce_binary_bad_flags(tmp_path, args, match):
  out = _binary("--paper=alford2019", f"--workdir={tmp_path}", "--dataset=digits",
                *args)
  assert out.returncode != 0 and match in out.stderr, out.stderr[-1000:]
  assert not os.path.exists(tmp_path / "alford2019_runs.json")


@pytest.mark.parametrize("bad, match", [
    (dict(lenet5_optimizer="rmsprop"), "unknown optimizer"),
    (dict(models=("resnet",)), "unknown models"),
    (dict(lenet5_densities=(0.0,)), "lenet5_densities"),
    (dict(families=("random",)), "unknown families"),
])
def test_alford2019_config_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(alford2019.reduced_config(TrainConfig()), **bad)


@pytest.mark.parametrize("bad, match", [
    (dict(dead_depths=(1, 8)), "dead_depths must be >= 2"),
    (dict(dead_fan_in=0), "dead_fan_in"),
    (dict(dead_fan_in=300), "dead_fan_in"),
    (dict(dead_inits=("xavier",)), "unknown \\['xavier'\\]"),
    (dict(dead_seeds=()), "dead_seeds"),
    (dict(topologies=("pruned",)), "cannot be ranked"),
    (dict(dead_control="lattice"), "unknown dead_control"),
])
def test_isakov2020_config_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(isakov2020.reduced_config(TrainConfig()), **bad)



# -- Alford et al. 2019 at paper scale (tiny sizes here) -----------------------

from snn_jax.reproduce import alford2019_paper  # noqa: E402


def _mnist_like(rng, n_train=700, n_test=200):
  x = rng.random((n_train + n_test, 784), dtype=np.float32) * 2 - 1
  y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
  for c in range(10):  # a learnable signal: a class-specific patch
    x[y == c, c * 70:(c + 1) * 70] += 1.0
  return data.Dataset("mnist", x[:n_train], y[:n_train], x[n_train:],
                      y[n_train:], 10, source="synthetic MNIST-sized arrays")


def _tiny_alford(**kw):
  base = alford2019_paper.paper_base(TrainConfig()).override({
      "run.epochs": 2, "optimizer.lr": 0.05,
      "optimizer.lr_boundaries": (6, 10), "optimizer.lr_values": (0.02, 0.01),
      "data.validation": "first:100"})
  return alford2019_paper.AlfordPaperConfig(**{**dict(
      base=base, sparsities=(0.5, 0.9), random_densities=(0.1,), widen=(2,),
      radixnets=("0.1",), prune_begin_step=2, prune_end_step=8, prune_every=2,
      seeds=(0,), models=("lenet300",)), **kw})


@pytest.mark.slow
def test_alford2019_paper_runs_every_arm_and_resumes_without_checkpoints(
    tmp_path, rng):
  import shutil
  ds = _mnist_like(rng)
  cfg = _tiny_alford(sparsities=(0.9,))
  first = alford2019_paper.run(cfg, str(tmp_path), dataset=ds)
  assert first["failed"] == []
  rows = _read(tmp_path / "paper_runs.json")
  assert {r["arm"] for r in rows} == set(alford2019_paper.ARMS)
  gradual = [r for r in rows if r["arm"] == "iterative_pruned"]
  assert [round(r["weight_density"], 2) for r in gradual] == [0.1]
  table = {(t["arm"], t["param"]): t for t in first["side_by_side"]
           if t["model"] == "lenet300"}
  assert set(table) == set(alford2019_paper.PAPER_LENET300) | set(
      alford2019_paper.PAPER_LENET5)
  assert table[("random", 0.01)]["verdict"] == "not run"
  assert table[("random", 0.1)]["runs"] == 1
  assert first["deviations"] and (tmp_path / "accuracy_vs_sparsity.png").exists()
  md = (tmp_path / "side_by_side.md").read_text()
  assert "| lenet300 | dense | – | 97.03 |" in md and "not run" in md
  run0 = tmp_path / "runs" / "lenet300" / "s0"
  assert (run0 / "dense" / "final_weights.npz").exists()
  assert (run0 / "gradual_s0.9" / "final_topology" / "layer_0.npz").exists()
  # A later session has the committed files but no checkpoints and no
  # regenerable topologies: nothing is retrained, the numbers are the same.
  for d in list(tmp_path.rglob("checkpoints")) + list(tmp_path.rglob("topology")):
    shutil.rmtree(d)
  again = alford2019_paper.run(cfg, str(tmp_path), dataset=ds)
  assert json.dumps(again["side_by_side"]) == json.dumps(first["side_by_side"])
  assert not list(tmp_path.rglob("checkpoints/*"))


def test_alford2019_paper_verdicts():
  rows = [{"arm": "dense", "param": None, "seed": s, "final_test_acc": v,
           "error": ""} for s, v in enumerate((0.970, 0.972, 0.971))]
  rows += [{"arm": "random", "param": 0.01, "seed": s, "final_test_acc": v,
            "error": ""} for s, v in enumerate((0.90, 0.91, 0.92))]
  table = {(t["arm"], t["param"]): t for t in
           alford2019_paper.side_by_side(rows) if t["model"] == "lenet300"}
  assert table[("dense", None)]["verdict"] == "agree"  # 97.03 within
  assert table[("random", 0.01)]["verdict"] == "ours higher"  # paper 74.1
  assert table[("wider", 100)]["verdict"] == "not run"


def test_alford2019_paper_config():
  cfg = alford2019_paper.paper_config(TrainConfig(data=DataConfig(data_dir="/nowhere")))
  b = cfg.base
  assert (b.model.hidden, b.run.batch_size, b.optimizer.name,
          b.optimizer.lr) == ((300, 100), 100, "sgd", 0.2)
  assert (b.data.validation, b.data.normalization) == ("first:5000",
                                                       "minus_one_to_one")
  assert b.data.data_dir == "/nowhere" and len(cfg.seeds) >= 3
  with pytest.raises(ValueError, match="unknown arms"):
    dataclasses.replace(cfg, arms=("lottery",))
  with pytest.raises(ValueError, match="radixnets"):
    dataclasses.replace(cfg, radixnets=("5",))


@pytest.mark.parametrize("args, match", [
    (["--paper=bourely2017", "--scale=paper", "--data_dir=/nowhere"],
     "/nowhere/mnist' does not exist"),
    (["--paper=liu2020", "--report_only"], "has nothing committed to report"),
    (["--paper=alford2019", "--report_only"],
     "alford2019_runs.json does not exist: run the alford2019 study"),
    (["--paper=alford2019", "--scale=paper", "--full"], "--full is retired"),
    (["--paper=alford2019", "--scale=full"], "--scale=full is retired"),
])
@pytest.mark.slow
def test_reproduce_binary_scale_errors(tmp_path, args, match):
  out = _binary(*args, f"--workdir={tmp_path}")
  assert out.returncode != 0 and match in out.stderr, out.stderr[-1000:]


# -- Liu et al. 2020, Figure 4 at paper scale (tiny sizes here) ----------------

from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import RunConfig


def test_perturbed_moves_exactly_the_fraction(rng):
  t = topology.make("erdos_renyi", 300, 200, density=0.05, seed=3)
  p = topology.perturbed(t, 0.1, seed=1)
  a = set(zip(t.rows.tolist(), t.cols.tolist()))
  b = set(zip(p.rows.tolist(), p.cols.tolist()))
  assert p.nnz == t.nnz and len(a - b) == len(b - a) == round(0.1 * t.nnz)
  assert p == topology.perturbed(t, 0.1, seed=1) != topology.perturbed(t, 0.1, seed=2)
  with pytest.raises(ValueError, match="empty"):
    topology.perturbed(topology.make("dense", 4, 4), 0.5, seed=0)


@pytest.mark.slow
def test_liu2020_figure4_tiny(tmp_path, rng):
  ds = _mnist_like(rng, n_train=600, n_test=150)
  base = liu2020_paper.paper_base(TrainConfig()).override({
      "model.hidden": (40, 40, 40), "run.epochs": 3,
      "data.validation": "last:120", "run.snapshot_epochs": (0, 1, 3),
      "run.batch_size": 60})
  cfg = liu2020_paper.LiuFigure4Config(
      base=base, networks=3, hidden_density=0.2, snapshot_epochs=(0, 1, 3),
      heatmap_epochs=(0, 3))
  s = liu2020_paper.run(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == []
  assert [r["epoch"] for r in s["nnstd_by_epoch"]] == [0, 1, 3]
  m0 = np.array(s["nnstd_matrices"]["0"])
  assert m0.shape == (4, 3, 3) and np.allclose(m0, m0.transpose(0, 2, 1))
  # w1 is w0 with 1% moved: close at the start; SET moves 30% per epoch
  assert 0 < m0[0, 0, 1] < 0.1
  m3 = np.array(s["nnstd_matrices"]["3"])
  assert m3[0, 0, 1] > m0[0, 0, 1]
  snaps = sorted(os.listdir(tmp_path / "runs" / "w0" / "train" / "topologies"))
  assert snaps == ["epoch_000", "epoch_001", "epoch_003"]
  table = {r["epoch"]: r for r in s["accuracy_vs_paper"]}
  assert table[200]["networks"] == 3 and table[10]["verdict"] == "not run"
  for name in ("nnstd_heatmaps.png", "nnstd_vs_epoch.png", "networks.csv",
               "accuracy_vs_paper.md"):
    assert (tmp_path / name).exists()


@pytest.mark.slow
def test_liu2020_figure4_with_the_keras_mask_variant(tmp_path, rng):
  """The variant reaches every network's config; the connections that
  survive from epoch 0 are reported per snapshot epoch."""
  ds = _mnist_like(rng, n_train=400, n_test=100)
  base = liu2020_paper.paper_base(TrainConfig()).override({
      "model.hidden": (40, 40, 40), "run.epochs": 2,
      "data.validation": "last:100", "run.snapshot_epochs": (0, 1, 2)})
  cfg = liu2020_paper.LiuFigure4Config(
      base=base, networks=2, hidden_density=0.2, snapshot_epochs=(0, 1, 2),
      heatmap_epochs=(0, 2), set_variant="keras_mask")
  s = liu2020_paper.run(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == []
  saved = _read(tmp_path / "runs" / "w0" / "train" / "config.json")
  assert saved["model"]["activation"] == "srelu"
  assert saved["model"]["init"] == "dense_glorot_uniform"
  assert saved["sparse"]["regrow_init"] == "zero"
  assert saved["optimizer"]["restart_every_epoch"] is True
  assert saved["run"]["batch_size"] == 100
  survival = {r["epoch"]: r for r in s["surviving_connections"]}
  # The epoch-1 snapshot follows its SET update, which moved 30 %; the
  # last epoch has no update.
  assert 0.65 < survival[1]["mean"] < 0.75 and survival[1]["networks"] == 2
  assert {**survival[2], "epoch": 1} == survival[1]
  assert any("keras_mask" in c for c in s["choices"])
  with pytest.raises(ValueError, match="unknown SET variant"):
    liu2020_paper.LiuFigure4Config(base=base, set_variant="keras")


def test_surviving_fraction_on_hand_made_topologies():
  a = topology.Topology(4, 4, np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]))
  b = topology.Topology(4, 4, np.array([0, 1, 2, 3]), np.array([0, 2, 2, 0]))
  assert liu2020_paper.surviving_fraction(a, b) == 0.5


@pytest.mark.slow
def test_paper_report_only_reports_finished_runs_and_trains_nothing(tmp_path, rng):
  ds = _mnist_like(rng)
  cfg = _tiny_alford(arms=("dense", "random"), random_densities=(0.1, 0.5))
  empty = alford2019_paper.run(cfg, str(tmp_path), dataset=ds, report_only=True)
  assert empty["runs_finished"] == 0 and empty["runs_planned"] == 3
  # arms derived from unfinished runs are unfinished too, not failed
  derived = alford2019_paper.run(
      dataclasses.replace(cfg, arms=("one_time_retrained", "iterative_retrained")),
      str(tmp_path), dataset=ds, report_only=True)
  assert derived["failed"] == [] and derived["runs_finished"] == 0
  assert not (tmp_path / "runs").exists() or not list(
      (tmp_path / "runs").rglob("summary.json"))
  alford2019_paper.run(dataclasses.replace(cfg, random_densities=(0.1,)),
                       str(tmp_path), dataset=ds)
  part = alford2019_paper.run(cfg, str(tmp_path), dataset=ds, report_only=True)
  assert part["runs_finished"] == 2 and part["failed"] == []
  assert _read(tmp_path / "provenance.json")["report_only"] is True
  table = {(t["arm"], t["param"]): t["verdict"] for t in part["side_by_side"]
           if t["model"] == "lenet300"}
  assert table[("random", 0.5)] == "not run" and table[("random", 0.1)] != "not run"
  assert not (tmp_path / "runs" / "lenet300" / "s0" / "random_d0.5").exists()


@pytest.mark.slow
def test_alford2019_paper_lenet5_arms(tmp_path, rng):
  ds = _mnist_like(rng, n_train=400, n_test=100)
  cfg = _tiny_alford(models=("lenet5",), sparsities=(0.9,), widen=(2, 100),
                     lenet5_epochs=1, lenet5_prune_begin_step=1,
                     lenet5_prune_end_step=2, lenet5_prune_every=1,
                     arms=("dense", "one_time_retrained", "iterative_pruned",
                           "wider", "radixnet"))
  assert alford2019_paper.planned_runs(cfg) == 4  # no 100x, no RadiX-Net
  s = alford2019_paper.run(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == [], s["failed"][0]["error"]
  assert s["runs_finished"] == 4
  rows = _read(tmp_path / "paper_runs.json")
  assert {r["model"] for r in rows} == {"lenet5"}
  pruned = [r for r in rows if r["arm"] == "iterative_pruned"][0]
  assert pruned["weight_density"] == pytest.approx(0.1, abs=0.002)
  wide = [r for r in rows if r["arm"] == "wider"][0]
  # conv2 100 channels and the 4,900 -> 384 layer at density 1/2
  assert wide["nnz_params"] == pytest.approx(
      500 + 0.5 * (500 * 100 + 4900 * 384) + 3840, rel=0.02)
  from snn_jax import studies
  stack = studies.stack_of(str(tmp_path / "runs" / "lenet5" / "s0" /
                               "one_time_s0.9"))
  assert [(t.n_in, t.n_out) for t in stack] == [(25, 20), (500, 50),
                                                 (2450, 384), (384, 10)]
  assert all(abs(t.density - 0.1) < 0.01 for t in stack)


def test_alford2019_lenet5_sheet_budget_config():
  cfg = alford2019_paper.lenet5_sheet_config(TrainConfig())
  assert cfg.models == ("lenet5",) and cfg.lenet5_epochs * 550 == 30_250
  assert (cfg.lenet5_prune_begin_step, cfg.lenet5_prune_end_step,
          cfg.lenet5_prune_every) == (3_000, 10_000, 200)
  # seed 0: dense, 5 one-time, 5 gradual, 5 retrained, 4 random, 2 wider;
  # seeds 1 and 2: dense, 4 one-time, 4 gradual, 4 retrained each
  assert alford2019_paper.planned_runs(cfg) == 22 + 2 * 13
  text = " ".join(alford2019_paper.deviations(cfg))
  assert "30,250 steps" in text and "seeds 1, 2 for the retrained" in text
  assert "4,400" not in text
  default = alford2019_paper.deviations(alford2019_paper.paper_config(
      TrainConfig()))
  assert any("8 epochs = 4,400 steps" in d for d in default)
  with pytest.raises(ValueError, match="must be among the sparsities"):
    dataclasses.replace(cfg, lenet5_more_seeds_sparsities=(0.8,))
  from snn_jax.reproduce import reproduction
  assert reproduction("alford2019", "paper",
                      "lenet5_sheet_budget").make_config is \
      alford2019_paper.lenet5_sheet_config


@pytest.mark.slow
def test_alford2019_lenet5_more_seeds_train_only_the_retrained_arms(
    tmp_path, rng):
  ds = _mnist_like(rng, n_train=300, n_test=100)
  cfg = _tiny_alford(models=("lenet5",), sparsities=(0.5, 0.9),
                     random_densities=(0.1,), lenet5_epochs=1,
                     lenet5_seeds=(0, 1), lenet5_more_seeds_sparsities=(0.9,),
                     arms=("dense", "one_time_retrained", "random"))
  assert alford2019_paper.planned_runs(cfg) == 4 + 2
  s = alford2019_paper.run(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == [] and s["runs_finished"] == 6
  rows = _read(tmp_path / "paper_runs.json")
  seed1 = sorted((r["arm"], r["param"]) for r in rows if r["seed"] == 1)
  assert seed1 == [("dense", None), ("one_time_retrained", 0.9)]
  assert {t["model"] for t in s["side_by_side"]} == {"lenet5"}
  by = {(t["arm"], t["param"]): t for t in s["side_by_side"]}
  assert by[("one_time_retrained", 0.9)]["runs"] == 2
  assert by[("one_time_retrained", 0.5)]["runs"] == 1


# -- Bourely 2017 and Isakov 2020 on full data (configuration, no training) ----

@pytest.mark.parametrize("paper", ["bourely2017", "isakov2020",
                                   "liu2020_sparse_vs_dense"])
def test_per_dataset_paper_configs(tmp_path, paper):
  for name in ("mnist", "fashion_mnist"):
    (tmp_path / name).mkdir()
  module = (reproduction("liu2020", "paper", "sparse_vs_dense").module
            if paper == "liu2020_sparse_vs_dense" else
            reproduction(paper, "paper").module)
  cfg = module.paper_config(TrainConfig(data=DataConfig(data_dir=str(tmp_path))))
  assert [n for n, _ in cfg.configs] == ["mnist", "fashion_mnist"]
  for name, inner in cfg.configs:
    assert inner.base.data.name == name and inner.base.data.split == "canonical"
    assert inner.base.data.data_dir == str(tmp_path / name)
    assert len(inner.seeds) >= 3
  assert cfg.choices
  with pytest.raises(ValueError, match="--data_dir"):
    module.paper_config(TrainConfig())


@pytest.mark.slow
def test_liu2020_sparse_vs_dense_tiny(tmp_path, rng):
  """Dense, static and SET per seed and epsilon; paired differences by
  seed; the flattening check; a report-only pass trains nothing and gives
  the same table."""
  from snn_jax.reproduce import liu2020_sparse_vs_dense as svd
  ds = _mnist_like(rng, n_train=400, n_test=100)
  base = TrainConfig().override({
      "run.epochs": 2, "run.batch_size": 50, "run.progress": False,
      "optimizer.lr": 0.05})
  cfg = svd.SparseVsDenseConfig(base=base, hidden=(32, 32), epsilons=(3.0,),
                                seeds=(0, 1), window=1)
  s = svd.run_one(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == [] and s["runs_finished"] == s["runs"] == 6
  table = {(t["method"], t["epsilon"]): t for t in s["table"]}
  assert set(table) == {("dense", None), ("static", 3.0), ("set", 3.0)}
  assert table[("dense", None)]["density"] == 1.0
  assert 0 < table[("set", 3.0)]["density"] < 1
  rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
  by = {(r["method"], r["seed"]): float(r["final_test_acc"]) for r in rows}
  want = np.mean([by[("set", s_)] - by[("dense", s_)] for s_ in ("0", "1")])
  assert table[("set", 3.0)]["minus_dense"] == pytest.approx(100 * want)
  assert all(r["flattened"] in ("True", "False") for r in rows)
  for name in ("sparse_vs_dense.md", "accuracy_vs_density.png",
               "provenance.json"):
    assert (tmp_path / name).exists()
  from snn_jax.reproduce import _common
  with _common.reporting_only():
    again = svd.run_one(cfg, str(tmp_path), dataset=ds)
  assert again["table"] == s["table"]
  assert _read(tmp_path / "provenance.json")["report_only"] is True
  with pytest.raises(ValueError, match="two windows"):
    svd.SparseVsDenseConfig(base=base, window=5)


@pytest.mark.slow
def test_liu2020_sparse_vs_dense_with_the_keras_mask_variant(tmp_path, rng):
  """Every arm trains the variant's network (SReLU, dropout, the output
  layer dense); static and SET start from one graph; only SET's optimizer
  restarts each epoch."""
  from snn_jax.reproduce import liu2020_sparse_vs_dense as svd
  ds = _mnist_like(rng, n_train=400, n_test=100)
  base = TrainConfig().override({"run.epochs": 2, "run.progress": False})
  cfg = svd.SparseVsDenseConfig(base=base, hidden=(32, 32), epsilons=(3.0,),
                                seeds=(0, 1), window=1,
                                set_variant="keras_mask")
  s = svd.run_one(cfg, str(tmp_path), dataset=ds)
  assert s["failed"] == [] and s["runs_finished"] == 6
  conf = {arm: _read(tmp_path / "runs" / f"{arm}_s0" / sub / "config.json")
          for arm, sub in (("dense", ""), ("static_eps3", "train"),
                           ("set_eps3", "train"))}
  for arm, c in conf.items():
    assert c["model"]["activation"] == "srelu" and c["model"]["dropout"] == 0.3
    assert c["optimizer"]["restart_every_epoch"] is (arm == "set_eps3")
  stacks = {arm: topology.load_stack(str(tmp_path / "runs" / f"{arm}_s0" /
                                         "train" / "topology"), chained=True)
            for arm in ("static_eps3", "set_eps3")}
  assert stacks["static_eps3"] == stacks["set_eps3"]
  assert stacks["set_eps3"][-1].nnzb == 32 * 10  # the output layer dense
  assert any("keras_mask" in c for c in s["choices"])


@pytest.mark.slow
def test_reproduce_binary_part_flag(tmp_path):
  import subprocess
  import sys
  run = lambda *a: subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "reproduce.py"),
       f"--workdir={tmp_path}", *a], capture_output=True, text=True, timeout=120)
  out = run("--paper=bourely2017", "--scale=paper", "--part=x")
  assert out.returncode == 2 and "one part only" in out.stderr
  out = run("--paper=liu2020", "--part=sparse_vs_dense")
  assert out.returncode == 2 and "at scale reduced has one part only" in out.stderr
  out = run("--paper=liu2020", "--scale=paper", "--part=nope")
  assert out.returncode == 2 and "figure4, sparse_vs_dense" in out.stderr


def test_per_dataset_report_only_reaches_every_run(tmp_path):
  from snn_jax.reproduce import _common, _per_dataset
  seen = []

  def run_one(inner, wd):
    try:
      _common.train(TrainConfig(model=ModelConfig(hidden=(8,)),
                                run=RunConfig(epochs=1, progress=False)), wd, None)
    except _common.NotFinished:
      seen.append(wd)
    return {"failed": [], "provenance": {"wall_seconds": 0.0}}
  cfg = _per_dataset.PerDatasetConfig(paper="x", configs=(("a", 1), ("b", 2)))
  s = _per_dataset.run(cfg, str(tmp_path), run_one=run_one, report_only=True)
  assert seen == [str(tmp_path / "a"), str(tmp_path / "b")]
  assert s["report_only"] and set(s["datasets"]) == {"a", "b"}
  assert not os.path.exists(tmp_path / "a" / "config.json")


def test_bootstrap_interval_stays_within_the_runs():
  """The accuracy interval of three seeds with one collapsed run: a t
  interval leaves [0, 1] (the committed table had [28.7, 140.4] %); the
  seed bootstrap stays within the runs' range."""
  vals = [0.97, 0.59, 0.98]
  t = studies.mean_ci(vals)
  assert t["high"] > 1 and t["low"] < min(vals)
  b = studies.bootstrap_mean_ci(vals)
  assert min(vals) <= b["low"] < b["mean"] < b["high"] <= max(vals)
  assert (b["min"], b["max"], b["n"]) == (0.59, 0.98, 3)
  one = studies.bootstrap_mean_ci([0.9])
  assert one["low"] == one["high"] == 0.9
  assert studies.bootstrap_mean_ci([])["n"] == 0


@pytest.mark.parametrize("values, paper, verdict", [
    ((0.97, 0.59, 0.98), 0.974, "unstable (1 of 3 runs collapsed)"),
    ((0.11,), 0.96, "unstable (1 of 1 runs collapsed)"),
    ((0.90, 0.95, 0.99), 0.95, "inconclusive (interval wider than 2 points)"),
    ((0.80, 0.85, 0.88), 0.97, "ours lower"),  # wide, yet excludes the paper
    ((0.970, 0.972, 0.971), 0.9703, "agree"),
    ((0.990, 0.991, 0.992), 0.97, "ours higher"),
    ((0.972,), 0.970, "agree (1 run)"),
    ((0.95,), 0.97, "ours lower (1 run)"),
    ((), 0.97, "not run"),
])
def test_accuracy_verdict(values, paper, verdict):
  assert studies.accuracy_verdict(paper, values)["verdict"] == verdict


@pytest.mark.parametrize("arm, reference, verdict", [
    ((0.90, 0.91, 0.92), (0.88, 0.89, 0.90), "higher (3 of 3 seeds)"),
    ((0.88, 0.89, 0.90), (0.90, 0.91, 0.92), "lower (3 of 3 seeds)"),
    ((0.90, 0.88, 0.92), (0.89, 0.89, 0.89), "inconclusive (2 of 3 seeds higher)"),
    ((0.97, 0.59, 0.98), (0.96, 0.96, 0.96), "unstable (1 of 6 runs collapsed)"),
    ((0.95, 0.96), (0.11, 0.96), "unstable (1 of 4 runs collapsed)"),
    ((0.95,), (0.94,), "higher (1 seed)"),
    ((), (), "not run"),
])
def test_comparison_verdict(arm, reference, verdict):
  assert studies.comparison_verdict(arm, reference) == verdict


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    arm=hypothesis.strategies.lists(hypothesis.strategies.floats(0.0, 1.0),
                                    min_size=1, max_size=6),
    shift=hypothesis.strategies.floats(-0.2, 0.2))
def test_a_collapsed_comparison_never_has_a_side(arm, shift):
  reference = [min(max(a - shift, 0.0), 1.0) for a in arm]
  v = studies.comparison_verdict(arm, reference)
  if studies.collapsed_runs(arm) or studies.collapsed_runs(reference):
    assert v.startswith("unstable")
  else:
    assert not v.startswith("unstable")


def test_group_stats_bounded_with_range_and_collapses():
  rows = [{"arm": "a", "seed": s, "final_test_acc": v, "error": ""}
          for s, v in enumerate((0.97, 0.59, 0.98))]
  (g,) = studies.group_stats(rows, ("arm",))
  assert 0.59 <= g["ci_low"] < g["ci_high"] <= 0.98
  assert (g["min"], g["max"], g["runs"], g["collapsed"]) == (0.59, 0.98, 3, 1)
  (d,) = studies.group_stats([dict(r, max_drop=0.5) for r in rows], ("arm",),
                             "max_drop")
  assert "collapsed" not in d  # only accuracies collapse


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    values=hypothesis.strategies.lists(
        hypothesis.strategies.floats(0.0, 1.0), min_size=1, max_size=6),
    paper=hypothesis.strategies.floats(0.0, 1.0))
def test_a_wide_or_collapsed_group_never_agrees(values, paper):
  v = studies.accuracy_verdict(paper, values)
  if v["verdict"].startswith("agree"):
    assert v["collapsed"] == 0
    assert v["n"] == 1 or (v["high"] - v["low"]) * 100 <= 2.0
    assert min(values) > 0.15 and max(values) - min(values) <= 0.10
  assert 0.0 <= v["low"] <= v["high"] <= 1.0


def test_the_papers_numbers_are_data_files():
  """The authors' sheet and logs are read from snn_jax/reproduce/data/,
  typed as the arms take their parameters."""
  sheet = alford2019_paper.read_sheet("lenet300")
  assert sheet[("dense", None)] == 0.9703
  assert sheet[("one_time_retrained", 0.99)] == 0.5608
  assert sheet[("wider", 100)] == 0.9430 and sheet[("radixnet", "10")] == 0.9398
  assert len(sheet) == 25 and len(alford2019_paper.read_sheet("lenet5")) == 22
  assert liu2020_paper.PAPER_VAL_ACC[200] == (0.8710, 0.8757)
  assert sorted(liu2020_paper.PAPER_VAL_ACC) == [10, 50, 100, 190, 200]


# -- Reduced studies reported again from their committed rows --------------------

@pytest.mark.parametrize("module,name", [(alford2019, "alford2019"),
                                         (bourely2017, "bourely2017"),
                                         (isakov2020, "isakov2020")])
def test_committed_reduced_summaries_follow_from_their_rows(tmp_path, module,
                                                            name):
  """``--report_only`` of a reduced study: the committed summary's
  statistics are what the committed rows give (nothing trained or read but
  the rows table)."""
  import shutil
  src = os.path.join(REPO_ROOT, "results", name)
  wd = tmp_path / name
  wd.mkdir()
  for f in os.listdir(src):
    if f.endswith(".json"):
      shutil.copy(os.path.join(src, f), wd / f)
  committed = _read(wd / "summary.json")
  cfg = module.reduced_config(TrainConfig())
  again = module.run(cfg, str(wd), dataset=data.load_digits(0),
                     report_only=True)
  def same(a, b):  # equal up to float rounding (another BLAS, another CPU)
    if isinstance(a, dict):
      return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
      return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float):
      if math.isnan(a) or math.isnan(b):  # an undefined correlation
        return math.isnan(a) and math.isnan(b)
      return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b
  fresh = json.loads(json.dumps(again, default=float))
  for key in committed:
    if key != "provenance":
      assert same(fresh[key], committed[key]), key
  assert again["provenance"]["statistics_from"].endswith("(committed rows)")
  assert again["provenance"]["runs_provenance"]["wall_seconds"] > 0
