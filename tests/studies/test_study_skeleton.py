"""The study skeleton: rows -> statistics -> summary with a declared
schema, failed runs listed, unfinished runs of a report-only pass not."""

import dataclasses
import json
import os

import pytest

from snn_jax import data, studies
from snn_jax.nn import ModelConfig
from snn_jax.studies import Study, load_rows, run_study
from snn_jax.studies import _runs
from snn_jax.topology import TopologyConfig
from snn_jax.training import RunConfig, TrainConfig
from tests.conftest import REPO_ROOT


pytestmark = pytest.mark.standard_promotion


@dataclasses.dataclass(frozen=True)
class TinyConfig:
  base: TrainConfig
  densities: tuple[float, ...] = (0.3, 2.0)  # 2.0 cannot be built


def _rows(cfg, workdir, ds):
  rows = []
  for d in cfg.densities:
    def one(d=d):
      run_cfg = cfg.base.override({"model.topology.density": d})
      s = studies.train(run_cfg, os.path.join(workdir, f"d{d:g}"), ds)
      return studies.run_row(s)
    row = studies.guarded(one)
    row["requested_density"] = d
    rows.append(row)
  return rows


def _statistics(cfg, rows, workdir):
  ok = studies.ok_rows(rows)
  return {"best": max((r["final_test_acc"] for r in ok), default=None),
          "finished": len(ok)}


TINY = Study(name="tiny", rows=_rows, statistics=_statistics,
             schema=("best", "finished"), rows_file="tiny_runs",
             failed_keys=("requested_density",),
             plot=lambda cfg, rows, summary, workdir: open(
                 os.path.join(workdir, "plot.txt"), "w").write("plotted"))


def _config():
  base = TrainConfig(model=ModelConfig(hidden=(16,), topology=TopologyConfig(
      "erdos_renyi", density=0.3)), run=RunConfig(epochs=1, batch_size=64,
                                                  progress=False))
  return TinyConfig(base=base)


@pytest.mark.slow
def test_run_study_writes_rows_statistics_failures_and_provenance(tmp_path):
  ds = data.load_digits(0)
  wd = str(tmp_path / "study")
  # A report-only pass before anything ran: the buildable run is
  # unfinished (not a failure), the unbuildable one failed.
  early = run_study(TINY, _config(), wd, dataset=ds, report_only=True)
  assert early["finished"] == early["runs_finished"] == 0 and early["runs"] == 2
  assert [f["requested_density"] for f in early["failed"]] == [2.0]
  assert not os.path.exists(os.path.join(wd, "d0.3"))  # nothing trained
  summary = run_study(TINY, _config(), wd, dataset=ds)
  assert list(summary) == ["best", "finished", "runs", "runs_finished",
                           "failed", "provenance"]
  assert summary["finished"] == summary["runs_finished"] == 1
  assert 0.1 < summary["best"] <= 1.0
  assert "density must be in" in summary["failed"][0]["error"]
  with open(os.path.join(wd, "summary.json")) as f:
    stored = json.load(f)
  assert stored["best"] == summary["best"]
  assert stored["provenance"]["paper"] == "tiny"
  assert stored["provenance"]["report_only"] is False
  for name in ("tiny_runs.csv", "tiny_runs.json", "provenance.json",
               "plot.txt"):
    assert os.path.exists(os.path.join(wd, name)), name
  assert "trained_nothing" not in stored["provenance"]
  # Run again: the finished run is skipped, the summary is the same, and
  # the training pass's record (its wall time, host) is kept beside this
  # pass's, through a report-only pass after it as well.
  again = run_study(TINY, _config(), wd, dataset=ds)
  assert again["best"] == summary["best"]
  assert again["provenance"]["trained_nothing"] is True
  assert again["provenance"]["runs_provenance"] == summary["provenance"]
  report = run_study(TINY, _config(), wd, dataset=ds, report_only=True)
  assert report["provenance"]["runs_provenance"] == summary["provenance"]
  with open(os.path.join(wd, "provenance.json")) as f:
    assert json.load(f)["runs_provenance"]["wall_seconds"] == (
        summary["provenance"]["wall_seconds"])
  assert load_rows(TINY, wd) == json.load(open(os.path.join(wd, "tiny_runs.json")))
  with pytest.raises(FileNotFoundError, match="run the tiny study"):
    load_rows(TINY, str(tmp_path / "elsewhere"))


def test_statistics_again_from_committed_rows(tmp_path):
  """A study whose runs are gone: its committed rows table alone gives the
  statistics, plots and summary again, and the training pass's provenance
  is kept beside the new one."""
  ds = data.load_digits(0)
  wd = str(tmp_path / "study")
  os.makedirs(wd)
  rows = [{"requested_density": d, "final_test_acc": a, "error": ""}
          for d, a in ((0.1, 0.5), (0.3, 0.8))]
  with open(os.path.join(wd, "tiny_runs.json"), "w") as f:
    json.dump(rows, f)
  with open(os.path.join(wd, "provenance.json"), "w") as f:
    json.dump({"paper": "tiny", "wall_seconds": 12.5}, f)
  never = dataclasses.replace(TINY, rows=lambda *a: pytest.fail("ran runs"))
  summary = run_study(never, _config(), wd, dataset=ds,
                      from_committed_rows=True)
  assert summary["best"] == 0.8 and summary["runs_finished"] == 2
  prov = summary["provenance"]
  assert prov["report_only"] is True and prov["trained_nothing"] is True
  assert prov["statistics_from"] == "tiny_runs.json (committed rows)"
  assert prov["runs_provenance"] == {"paper": "tiny", "wall_seconds": 12.5}
  again = run_study(never, _config(), wd, dataset=ds, from_committed_rows=True)
  assert again["provenance"]["runs_provenance"]["wall_seconds"] == 12.5
  assert os.path.exists(os.path.join(wd, "plot.txt"))
  with pytest.raises(FileNotFoundError, match="run the tiny study"):
    run_study(never, _config(), str(tmp_path / "empty"), dataset=ds,
              from_committed_rows=True)


def test_provenance_of_a_study_over_several_datasets(tmp_path):
  a, b = data.load_digits(0), data.load_digits(1)
  rec = _runs.Provenance("two", _config(), {"first": a, "second": b}).write(
      str(tmp_path))
  assert list(rec["data"]) == ["first", "second"]
  assert rec["data"]["second"]["fingerprint"] == b.fingerprint
  assert rec["data"]["first"]["train_examples"] == len(a.y_train)


def test_a_study_whose_statistics_break_its_schema_fails(tmp_path):
  bad = dataclasses.replace(TINY, schema=("best",))
  cfg = dataclasses.replace(_config(), densities=(2.0,))
  with pytest.raises(ValueError, match="declares \\['best'\\]"):
    run_study(bad, cfg, str(tmp_path), dataset=data.load_digits(0))


@pytest.mark.parametrize("bad,match", [
    (dict(seeds=()), "distinct seeds"), (dict(seeds=(1, 1)), "distinct seeds"),
    (dict(max_epochs=1), "max_epochs"), (dict(degree_layer=-1), "degree_layer")])
def test_evolution_config_validation(bad, match):
  from snn_jax.studies import EvolutionConfig
  with pytest.raises(ValueError, match=match):
    EvolutionConfig(base=TrainConfig(), **bad)


@pytest.mark.slow
def test_the_readme_study_example_runs(tmp_path, monkeypatch):
  """The README's "A study of your own" block, run as written (on the
  embedded digits, for one epoch)."""
  import re
  with open(os.path.join(REPO_ROOT, "README.md")) as f:
    text = f.read()
  section = text[text.index("## A study of your own"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  code = code.replace("TrainConfig()", "TrainConfig().override({"
                      "'run.epochs': 1, 'run.progress': False, "
                      "'model.hidden': (32,)})")
  monkeypatch.chdir(tmp_path)
  scope: dict = {}
  exec(compile(code, "README.md", "exec"), scope)
  summary = scope["summary"]
  assert summary["runs"] == summary["runs_finished"] == 3
  assert [a["fan_in"] for a in summary["accuracy"]] == [4, 8, 16]
  assert (tmp_path / "out" / "fan_in" / "fan_in_runs.csv").exists()


def test_train_stack_passes_objects_and_continues_runs_started_with_a_folder(
    tmp_path):
  """A stack goes to the run as objects (recorded in train/topology and by
  fingerprint); another stack in the same workdir is refused; a run that an
  earlier version started through ``workdir/topology`` is taken as it was
  started (finished: returned, not retrained or refused)."""
  from snn_jax import topology
  from snn_jax.training import train_and_evaluate
  ds = data.load("digits")
  base = TrainConfig(model=ModelConfig(hidden=(24,)),
                     run=RunConfig(epochs=1, batch_size=64, progress=False))
  stack = topology.make_stack("erdos_renyi", [64, 24, 10], density=0.3, seed=1)
  new = str(tmp_path / "new")
  s = studies.train_stack(base, stack, new, ds, seed=0)
  assert studies.stack_of(new) == stack
  with open(os.path.join(new, "train", "config.json")) as f:
    cfg = json.load(f)
  assert cfg["given_topologies"] and cfg["model"]["topology"] == dict(
      TopologyConfig("erdos_renyi").to_dict())
  assert not os.path.exists(os.path.join(new, "topology"))
  assert studies.train_stack(base, stack, new, ds, seed=0) == s
  other = topology.make_stack("erdos_renyi", [64, 24, 10], density=0.3, seed=2)
  with pytest.raises(FileExistsError, match="given_topologies"):
    studies.train_stack(base, other, new, ds, seed=0)
  # Started as older versions did: the stack saved to a folder that the
  # config names.
  old = str(tmp_path / "old")
  topology.save_stack(stack, os.path.join(old, "topology"))
  started = train_and_evaluate(base.override({
      "model.topology": TopologyConfig("erdos_renyi",
                                       directory=os.path.join(old, "topology")),
      "run.seed": 0}), os.path.join(old, "train"), dataset=ds)
  import shutil
  shutil.rmtree(os.path.join(old, "topology"))  # not committed: regenerated
  assert studies.train_stack(base, stack, old, ds, seed=0) == started
  assert studies.stack_of(old) == stack
  assert not os.path.exists(os.path.join(old, "train", "topology"))
