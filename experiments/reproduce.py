r"""Reproduces one seed paper's central claims (snn_jax.reproduce).

  python experiments/reproduce.py --paper=bourely2017 --workdir=out/bourely \
      --dataset=mnist --data_dir=../shared/datasets/mnist

Papers: bourely2017, liu2020, isakov2020, alford2019. --scale=reduced (the
default) runs the reduced configuration (documented per paper; under 30
minutes on a 2-core CPU); --scale=paper the paper's own setup where one is
written (alford2019: LeNet-300-100 and LeNet-5 on full MNIST, every
configuration of the authors' sheet; liu2020: the Figure-4 experiment on
Fashion-MNIST; --data_dir holds that dataset's IDX files; liu2020
--part=sparse_vs_dense: static and SET-evolved sparse MLPs against dense
over three densities on full MNIST and Fashion-MNIST, --data_dir as for
bourely2017. bourely2017 and
isakov2020: the studies on full MNIST and Fashion-MNIST; --data_dir is the
folder holding mnist/ and fashion_mnist/, e.g. ../shared/datasets). Hours
each: every run resumes, finished runs are skipped, and --report_only writes
the results of the finished runs without training. (--scale=full and
--full are retired: they fail naming --scale=paper.) Every reproduction is
one entry of snn_jax.reproduce.REPRODUCTIONS, keyed by (paper, scale,
part). --seeds and --epochs replace the configuration's; --set=field=JSON replaces any other field of the paper's
config (e.g. --set='densities=[0.05, 0.1]'). Writes result rows, summary.json
(statistics with intervals over seeds), provenance.json and plots into
--workdir; every run resumes from its own checkpoints.
"""

import dataclasses
import json

from absl import app, flags, logging

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import data
from snn_jax.reproduce import PAPERS, REPRODUCTIONS, parts, reproduction
from snn_jax.reproduce._per_dataset import PerDatasetConfig
from snn_jax.data import DataConfig
from snn_jax.training import RunConfig, TrainConfig

try:
  from experiments import data_flags
except ImportError:
  import data_flags

_PAPER = flags.DEFINE_enum("paper", None, list(PAPERS), "Paper to reproduce.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_SCALE = flags.DEFINE_enum(
    "scale", "reduced", ["reduced", "paper", "full"],
    "reduced (committed default) or paper (the paper's own setup, or ours "
    "on the full datasets where the paper's is not public); full is "
    "retired.")
_FULL = flags.DEFINE_bool("full", False, "Retired: use --scale=paper.")
_DATASET = data_flags.define_dataset_flags(default="mnist")
_SPLIT_SEED = flags.DEFINE_integer(
    "split_seed", 0, "Seed of the train/held-out split (fixed, so that runs "
    "with different seeds share one held-out set).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (replaces the config's).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs (replaces the config's).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing. --scale=paper: write the result "
    "files from the runs that have finished (while, or between sessions in "
    "which, the others continue); reduced bourely2017, alford2019 and "
    "isakov2020: "
    "compute the statistics, plots and summary again from the committed "
    "rows table.")
_PART = flags.DEFINE_string(
    "part", None, "Which part of a study with several (" + "; ".join(
        f"{p} at {s}: {', '.join(parts(p, s))}" for p, s in dict.fromkeys(
            k[:2] for k in REPRODUCTIONS) if len(parts(p, s)) > 1)
    + "; default the first).")
_SET = flags.DEFINE_multi_string("set", [], "field=JSON value of the paper's "
                                 "config, e.g. --set='hidden=[64, 64]'.")

flags.mark_flags_as_required(["paper", "workdir"])


def _with_overrides(cfg):
  if isinstance(cfg, PerDatasetConfig):  # one study config per dataset
    return dataclasses.replace(cfg, configs=tuple(
        (name, _with_overrides(inner)) for name, inner in cfg.configs))
  fields = {f.name for f in dataclasses.fields(cfg)} - {"base"}
  changes = {}
  for item in _SET.value:
    key, sep, value = item.partition("=")
    if not sep or key not in fields:
      raise app.UsageError(f"--set={item!r}: expected field=JSON with a field "
                           f"of {type(cfg).__name__}: {sorted(fields)}")
    try:
      v = json.loads(value)
    except json.JSONDecodeError as e:
      raise app.UsageError(f"--set={item!r}: value is not JSON ({e})")
    changes[key] = tuple(v) if isinstance(v, list) else v
  if _SEEDS.value is not None:
    changes["seeds"] = tuple(int(s) for s in _SEEDS.value)
  if _EPOCHS.value is not None:
    changes["base"] = cfg.base.override({"run.epochs": _EPOCHS.value})
  return dataclasses.replace(cfg, **changes)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _FULL.value:
    raise app.UsageError("--full is retired: --scale=paper runs each paper's "
                         "own setup on the full data")
  try:
    entry = reproduction(_PAPER.value, _SCALE.value, _PART.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if _REPORT_ONLY.value and not entry.reports_only:
    raise app.UsageError(f"--report_only: {entry.paper} at scale "
                         f"{entry.scale} has nothing committed to report "
                         "from (the paper-scale studies have their runs; "
                         "reduced bourely2017, alford2019 and isakov2020 "
                         "their rows)")
  try:
    base = TrainConfig(
        data=DataConfig(
            name=_DATASET.value, data_dir=data_flags.DATA_DIR.value,
            tfds_data_dir=data_flags.TFDS_DATA_DIR.value,
            tfds_manual_dir=data_flags.TFDS_MANUAL_DIR.value,
            tfds_download=data_flags.TFDS_DOWNLOAD.value,
            split_seed=_SPLIT_SEED.value, split=data_flags.DATA_SPLIT.value),
        run=RunConfig(progress=False))
    cfg = _with_overrides(entry.make_config(base))
    kwargs = {"report_only": True} if _REPORT_ONLY.value else {}
    summary = entry.run(cfg, _WORKDIR.value, **kwargs)
  except (ValueError, TypeError, FileNotFoundError,
          data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  prov = summary["provenance"]
  if _REPORT_ONLY.value and entry.scale == "reduced":
    print(f"{_PAPER.value}: statistics, plots and summary again from the "
          f"committed rows in {_WORKDIR.value} (no run read or trained)")
  elif _REPORT_ONLY.value:
    done = summary.get("runs_finished", summary.get("networks_finished"))
    planned = summary.get("runs_planned", summary.get(
        "networks_planned", summary.get("runs")))
    counted = f"the {done} of {planned} runs" if done is not None else "the runs"
    print(f"{_PAPER.value}: report of {counted} that have finished, in "
          f"{_WORKDIR.value}; run without --report_only to continue the others")
  else:
    print(f"{_PAPER.value}: done in {prov['wall_seconds']:.0f} s; results in "
          f"{_WORKDIR.value} (summary.json, provenance.json, *.csv, *.png)")
  # Every study's summary lists its failed runs at the top (a study over
  # several datasets gathers theirs there, each with its dataset).
  failed = summary.get("failed", [])
  if failed:
    print(f"{len(failed)} grid points failed (rows with 'error' set):")
    for f in failed:
      print("  ", f)


if __name__ == "__main__":
  cli.run(main)
