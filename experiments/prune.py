r"""Pruning-derived topologies (Alford et al. 2019): train dense, magnitude-
prune (one-shot or iterative, per layer or global, optionally rewinding to
the initial weights), retrain; the final mask is saved as a topology that
any binary takes with ``--topology_dir``.

  python experiments/prune.py --workdir=out/prune --hidden=300,100 \
      --prune_density=0.05 --prune_iterations=3 --epochs=10

then e.g. ``python experiments/train.py --topology_dir=out/prune/pruned_topology
--hidden=300,100 --workdir=out/pruned_retrain``. Every training flag of
train.py applies (dataset, optimizer, block size = pruning granularity, ...);
the --topology flags are ignored. Restarting with the same flags resumes.
"""

from absl import app, flags, logging

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import data
from snn_jax.studies import PruneConfig, SCOPES, prune_and_retrain

try:
  from experiments import common_flags
except ImportError:
  import common_flags

# --prune_density (common_flags): the final fraction of weights kept; 0.1
# when not given.
DEFAULT_DENSITY = 0.1
_ITERATIONS = flags.DEFINE_integer(
    "prune_iterations", 1, "Pruning rounds (1 = one-shot; geometric schedule).")
_SCOPE = flags.DEFINE_enum("prune_scope", "layer", list(SCOPES),
                           "Per-layer or global magnitude threshold.")
_REWIND = flags.DEFINE_bool("rewind", False,
                            "Retrain from the dense initial weights (lottery ticket).")
_DENSE_EPOCHS = flags.DEFINE_integer("dense_epochs", None,
                                     "Epochs of the dense run (default --epochs).")
_RETRAIN_EPOCHS = flags.DEFINE_integer(
    "retrain_epochs", None, "Epochs of each retraining round (default --epochs).")

flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    config = common_flags.config_from_flags(pruning_during_training=False)
    density = common_flags._PRUNE_DENSITY.value
    prune = PruneConfig(density=DEFAULT_DENSITY if density is None else density, iterations=_ITERATIONS.value,
                        scope=_SCOPE.value, rewind=_REWIND.value,
                        dense_epochs=_DENSE_EPOCHS.value,
                        retrain_epochs=_RETRAIN_EPOCHS.value)
    summary = prune_and_retrain(config, prune, common_flags._WORKDIR.value)
  except (ValueError, FileExistsError, FileNotFoundError,
          data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  print(f"{'stage':>10} {'density':>9} {'nnz':>10} {'test acc':>9} {'train s':>8}")
  for r in summary["stages"]:
    print(f"{r['stage']:>10} {r['density']:9.4f} {r['nnz_params']:10,} "
          f"{r['final_test_acc']:9.4f} {r['train_seconds']:8.1f}")
  print(f"pruned topology: {summary['pruned_topology']}  (data: "
        f"{summary['provenance']['data']['source']})")


if __name__ == "__main__":
  cli.run(main)
