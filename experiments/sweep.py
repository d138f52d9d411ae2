r"""A grid of training runs (topologies x densities x seeds) into one CSV.

  python experiments/sweep.py --workdir=out/sweep \
      --topologies=erdos_renyi,cayley,circulant,radixnet \
      --densities=0.05,0.1,0.2 --seeds=0,1,2 --epochs=10

(digits: about 3 minutes on 2 cores). Every training flag of train.py
applies to all runs. Writes ``sweep.csv``/``sweep.json`` (accuracy, density,
spectral gap, algebraic connectivity, reachability per run),
``accuracy_vs_density.png`` and ``accuracy_vs_expansion.png``; each run
keeps its own workdir under ``runs/`` and resumes if the sweep is restarted.
``--processes=N`` runs N trainings at once in spawned processes.
"""

from absl import app, flags, logging

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import topology
from snn_jax.studies import SWEEP, SweepConfig, load_rows, run_sweep

try:  # defines the training flags
  from experiments import common_flags
except ImportError:
  import common_flags

_TOPOLOGIES = flags.DEFINE_list("topologies", ["erdos_renyi", "cayley", "circulant"],
                                "Registered topology names.")
_DENSITIES = flags.DEFINE_list("densities", ["0.05", "0.1", "0.2"], "Densities.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_PROCESSES = flags.DEFINE_integer("processes", 1, "Concurrent training processes.")
flags.mark_flag_as_required("workdir")
flags.adopt_module_key_flags(common_flags)  # --helpshort lists them


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  unknown = [t for t in _TOPOLOGIES.value if t not in topology.names()]
  if unknown:
    raise app.UsageError(f"unknown topologies {unknown}; known: "
                         f"{', '.join(topology.names())}")
  try:
    base = common_flags.config_from_flags()
    cfg = SweepConfig(base=base, topologies=tuple(_TOPOLOGIES.value),
                      densities=tuple(float(d) for d in _DENSITIES.value),
                      seeds=tuple(int(s) for s in _SEEDS.value),
                      processes=_PROCESSES.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  summary = run_sweep(cfg, common_flags._WORKDIR.value)
  for r in load_rows(SWEEP, common_flags._WORKDIR.value):
    status = r["error"] or f"acc {r['final_test_acc']:.4f}"
    print(f"{r['topology']:>18} d={r['requested_density']} seed={r['seed']}: {status}")
  for metric, c in summary["correlations"].items():
    print(f"accuracy vs {metric}: Spearman {c['spearman']:.3f}, Pearson "
          f"{c['pearson']:.3f} over {c['n']} runs")


if __name__ == "__main__":
  cli.run(main)
