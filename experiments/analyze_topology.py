r"""Data-free analysis of sparse topologies: metrics table, JSON/CSV, figures.

Every registered topology on a 784-1024-1024-10 MLP at density 0.1
(about 20 s on a 2-core CPU):

  python experiments/analyze_topology.py --topology=all \
      --widths=784,1024,1024,10 --density=0.1 --output_dir=/tmp/topo

One 65,536 x 65,536 layer at density 0.001 (about 20 s, peak memory ~1.5 GB):

  python experiments/analyze_topology.py --topology=erdos_renyi \
      --widths=65536,65536 --density=0.001 --output_dir=/tmp/big

Prints one row per layer and one per network (``scope``), with density,
fan-in/out, normalised and raw spectral gap, algebraic connectivity,
reachability and path-count uniformity (cv); writes ``metrics.json``,
``metrics.csv``, ``<name>_mask.png`` and ``<name>_degrees.png``.
"""

import json

from absl import app, flags

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import analysis, topology

_TOPOLOGY = flags.DEFINE_list(
    "topology", ["erdos_renyi"],
    f"Registered topology names, or 'all'. Known: {', '.join(topology.names())}")
_WIDTHS = flags.DEFINE_list("widths", ["784", "1024", "1024", "10"],
                            "Layer widths, input first.")
_DENSITY = flags.DEFINE_float("density", None, "Connection density per layer.")
_FAN_IN = flags.DEFINE_integer("fan_in", None, "Inputs per output neuron.")
_BLOCK_SIZE = flags.DEFINE_integer("block_size", 1, "Block edge in neurons.")
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed.")
_PARAMS = flags.DEFINE_string(
    "topology_params", "{}",
    "JSON dict of generator parameters, e.g. '{\"epsilon\": 20}' or "
    "'{\"radices\": [[4, 4, 4]]}'; each goes to the generators that take it.")
flags.DEFINE_alias("params", "topology_params")  # the older name
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where to write metrics and figures.")
_SPECTRAL = flags.DEFINE_bool("spectral", True,
                              "Compute spectral gap and algebraic connectivity.")
_PLOTS = flags.DEFINE_bool("plots", True, "Draw the mask and degree figures.")

_COLUMNS = ("name", "scope", "layer", "n_in", "n_out", "density", "fan_in_mean",
            "fan_out_mean", "spectral_gap", "spectral_gap_raw",
            "algebraic_connectivity", "reachability", "paths_cv", "build_s",
            "seconds")


def main(argv):
  del argv
  if _TOPOLOGY.value == ["all"]:  # Every data-free generator.
    names = [n for n in topology.names() if n != "pruned"]
  else:
    names = _TOPOLOGY.value
  try:
    params = json.loads(_PARAMS.value)
    widths = [int(w) for w in _WIDTHS.value]
  except ValueError as e:
    raise app.UsageError(f"bad --topology_params or --widths: {e}") from None
  if not isinstance(params, dict):
    raise app.UsageError("--topology_params must be a JSON object")
  if "pruned" in names:
    raise app.UsageError(
        "'pruned' needs trained weights; derive it with experiments/prune.py "
        "or snn_jax.topology.make(..., weights=...)")
  config = analysis.AnalyzeConfig(
      topologies=names, widths=widths, density=_DENSITY.value,
      fan_in=_FAN_IN.value, block_size=_BLOCK_SIZE.value, seed=_SEED.value,
      params=params, spectral=_SPECTRAL.value, plots=_PLOTS.value,
      skip_errors=len(names) > 1)
  try:
    rows = analysis.analyze(config, _OUTPUT_DIR.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  print(analysis.format_table([r for r in rows if "error" not in r], _COLUMNS))
  for r in rows:
    if "error" in r:
      print(f"{r['name']}: not built -- {r['error']}")
  if _OUTPUT_DIR.value:
    print(f"wrote {_OUTPUT_DIR.value}/metrics.json, metrics.csv and figures")


if __name__ == "__main__":
  cli.run(main)
