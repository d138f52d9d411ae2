r"""Very deep sparse MLPs under naive and sparsity-aware initialisation
(Isakov & Kinsy, NeuroFabric, arXiv:2002.08339).

  python experiments/deep_init.py --workdir=out/deep_init \
      --dataset=mnist --data_dir=../shared/datasets/mnist \
      --topology=fixed_fan_in --fan_in=16 --depths=8,16,32,64 --epochs=3

Every training flag of train.py applies (--hidden and --init are set by the
grid). Writes deep_init.csv/json and accuracy_vs_depth.png.
"""

from absl import app, flags, logging

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import data
from snn_jax.studies import DEEP_INIT, DeepInitConfig, load_rows, run_deep_init

try:
  from experiments import common_flags
except ImportError:
  import common_flags

_DEPTHS = flags.DEFINE_list("depths", ["8", "16", "32", "64"], "Hidden layers.")
_WIDTH = flags.DEFINE_integer("width", 256, "Units per hidden layer.")
_INITS = flags.DEFINE_list("inits", ["dense_he", "sparse_he", "neurofabric"],
                           "Initialisers compared.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds.")

flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    cfg = DeepInitConfig(base=common_flags.config_from_flags(),
                         depths=tuple(int(d) for d in _DEPTHS.value),
                         width=_WIDTH.value, inits=tuple(_INITS.value),
                         seeds=tuple(int(s) for s in _SEEDS.value))
    run_deep_init(cfg, common_flags._WORKDIR.value)
    rows = load_rows(DEEP_INIT, common_flags._WORKDIR.value)
  except (ValueError, FileNotFoundError, data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  print(f"{'depth':>5} {'init':>12} {'seed':>4} {'test acc':>9} {'train loss':>10}")
  for r in rows:
    acc = "diverged" if r["diverged"] else f"{r['final_test_acc']:.4f}"
    loss = "" if r["diverged"] else f"{r['final_train_loss']:.4f}"
    print(f"{r['depth']:5d} {r['init']:>12} {r['seed']:4d} {acc:>9} {loss:>10}")


if __name__ == "__main__":
  cli.run(main)
