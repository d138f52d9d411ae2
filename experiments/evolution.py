r"""Topology evolution (Liu et al. 2020): NNSTD between the epochs of a run
and between runs, accuracy against NNSTD, and the input-degree distribution.

One command trains the runs (one per seed, topology snapshots every epoch)
and analyses them:

  python experiments/evolution.py --workdir=out/evolution \
      --sparse_training=set --seeds=0,1,2 --epochs=10

Runs already trained with --snapshot_topologies are analysed with
``--runs=dir1,dir2,...`` (nothing is trained then). Every training flag of
train.py applies to the runs. Output: ``<workdir>/analysis/`` (CSV, JSON,
nnstd_heatmaps.png, accuracy_vs_nnstd.png, degree_evolution.png).
"""

import os

from absl import app, flags, logging

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import analysis, data
from snn_jax.studies import EvolutionConfig, run_evolution

try:
  from experiments import common_flags
except ImportError:
  import common_flags

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "One run per seed.")
_RUNS = flags.DEFINE_list("runs", None,
                          "Analyse these existing run workdirs instead of training.")
_MAX_EPOCHS = flags.DEFINE_integer(
    "max_epochs", 12, "Snapshots compared per run (evenly spaced).")
_DEGREE_LAYER = flags.DEFINE_integer("degree_layer", 0,
                                     "Layer whose input degrees are plotted.")

flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  workdir = common_flags._WORKDIR.value
  try:
    if _RUNS.value:
      summary = analysis.evolution_report(
          list(_RUNS.value), os.path.join(workdir, "analysis"),
          max_epochs=_MAX_EPOCHS.value, degree_layer=_DEGREE_LAYER.value)
    else:
      cfg = EvolutionConfig(
          base=common_flags.config_from_flags(),
          seeds=tuple(int(s) for s in _SEEDS.value),
          max_epochs=_MAX_EPOCHS.value, degree_layer=_DEGREE_LAYER.value,
          overwrite=common_flags._OVERWRITE.value)
      study = run_evolution(cfg, workdir)
      if study["failed"]:
        raise ValueError("; ".join(f"seed {f['seed']}: {f['error']}"
                                   for f in study["failed"]))
      summary = study["evolution"]
  except (ValueError, FileExistsError, FileNotFoundError,
          data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  print(f"{'run':>12} {'final acc':>9} {'NNSTD to start':>15} {'NNSTD to others':>16}")
  for r in summary["runs"]:
    acc = r["final_test_acc"]
    other = r["mean_nnstd_to_other_runs"]
    print(f"{r['run']:>12} {acc if acc is not None else float('nan'):9.4f} "
          f"{r['nnstd_final_to_start']:15.4f} "
          f"{other if other is not None else float('nan'):16.4f}")
  print(f"analysis written to {summary['output_dir']}")


if __name__ == "__main__":
  cli.run(main)
