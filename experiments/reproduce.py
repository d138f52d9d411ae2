r"""Reproduces one seed paper's central claims (snn_jax.reproduce).

  python experiments/reproduce.py --paper=bourely2017 --workdir=out/bourely \
      --dataset=mnist --data_dir=../shared/datasets/mnist

Papers: bourely2017, liu2020, isakov2020, alford2019. Without --full, the
reduced configuration (documented per paper; under 30 minutes on a 2-core
CPU); with --full, the paper-scale one. --seeds and --epochs replace the
configuration's; --set=field=JSON replaces any other field of the paper's
config (e.g. --set='densities=[0.05, 0.1]'). Writes result rows, summary.json
(statistics with intervals over seeds), provenance.json and plots into
--workdir; every run resumes from its own checkpoints.
"""

import dataclasses
import json

from absl import app, flags, logging

from snn_jax import data
from snn_jax.reproduce import PAPERS
from snn_jax.training import TrainConfig

try:
  from experiments import data_flags
except ImportError:
  import data_flags

_PAPER = flags.DEFINE_enum("paper", None, list(PAPERS), "Paper to reproduce.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_FULL = flags.DEFINE_bool("full", False, "Paper scale instead of reduced.")
_DATASET = data_flags.define_dataset_flags(default="mnist")
_SPLIT_SEED = flags.DEFINE_integer(
    "split_seed", 0, "Seed of the train/held-out split (fixed, so that runs "
    "with different seeds share one held-out set).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (replaces the config's).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs (replaces the config's).")
_SET = flags.DEFINE_multi_string("set", [], "field=JSON value of the paper's "
                                 "config, e.g. --set='hidden=[64, 64]'.")

flags.mark_flags_as_required(["paper", "workdir"])


def _with_overrides(cfg):
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
    changes["base"] = dataclasses.replace(cfg.base, epochs=_EPOCHS.value)
  return dataclasses.replace(cfg, **changes)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  module = PAPERS[_PAPER.value]
  try:
    base = TrainConfig(
        dataset=_DATASET.value, data_dir=data_flags.DATA_DIR.value,
        tfds_data_dir=data_flags.TFDS_DATA_DIR.value,
        tfds_manual_dir=data_flags.TFDS_MANUAL_DIR.value,
        tfds_download=data_flags.TFDS_DOWNLOAD.value,
        split_seed=_SPLIT_SEED.value, data_split=data_flags.DATA_SPLIT.value,
        progress=False)
    cfg = (module.full_config if _FULL.value else module.reduced_config)(base)
    cfg = _with_overrides(cfg)
    summary = module.run(cfg, _WORKDIR.value)
  except (ValueError, TypeError, FileNotFoundError,
          data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  prov = summary["provenance"]
  print(f"{_PAPER.value}: done in {prov['wall_seconds']:.0f} s; results in "
        f"{_WORKDIR.value} (summary.json, provenance.json, *.csv, *.png)")
  failed = summary.get("failed") or [
      f for d in summary.get("datasets", {}).values() for f in d["failed"]]
  if failed:
    print(f"{len(failed)} grid points failed (rows with 'error' set):")
    for f in failed:
      print("  ", f)


if __name__ == "__main__":
  app.run(main)
