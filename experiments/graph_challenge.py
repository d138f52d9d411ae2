r"""Sparse DNN Graph Challenge inference (Kepner et al. 2019) on our kernels.

The official network, checked against the official truth:

  python experiments/graph_challenge.py \
      --official_dir=../shared/datasets/graph_challenge --sizes=1024 --layers=120

Look-alike networks (for sizes whose official files are not at hand),
checked against scipy.sparse on the same network in the same process:

  python experiments/graph_challenge.py --data_dir=../shared/datasets/mnist \
      --sizes=1024,4096 --layers=120

Prints the rate table (inputs x edges / s, against scipy in the same run)
and writes it to --output_dir (default out/graph_challenge; pass
--output_dir=benchmarks/cpu to commit a measurement). Exits 1 when one of
our kernels' categories differ from the reference (the official truth, or
scipy for look-alike networks); a disagreeing dense baseline is reported in
its row and does not fail the run. The "peak GB" column is the process's
peak RSS after each method; our kernels run first, so theirs bounds our
path with the inputs and weights loaded (run one size per process to read
it for that size). See snn_jax/graph_challenge.py.

Across processes (inputs split over them, categories gathered and checked,
the rate of the whole job reported):

  python experiments/launch_local.py --num_processes=2 -- \
      experiments/graph_challenge.py --official_dir=../shared/datasets/graph_challenge
"""

import datetime
import os

from absl import app, flags
import jax

try:
  from experiments import cli, distributed_flags
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli
  import distributed_flags

from snn_jax import graph_challenge as gc
from snn_jax.analysis import write_rows
from snn_jax.data import find_idx, read_idx
from snn_jax.utils import device_info, versions

_OFFICIAL_DIR = flags.DEFINE_string(
    "official_dir", None, "Directory with the challenge's official files "
    "(neuron<N>/n<N>-l<L>.tsv[.gz], sparse-images-<N>*.tsv[.gz], "
    "neuron<N>-l<L>-categories.tsv).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Look-alike networks: directory with MNIST IDX images "
    "(.gz or not), made into challenge inputs.")
_SIZES = flags.DEFINE_list("sizes", ["1024"], "Neurons per layer.")
_LAYERS = flags.DEFINE_list("layers", ["120"], "Layer counts.")
_INPUTS = flags.DEFINE_integer("inputs", None, "Use only the first N inputs.")
_BLOCK_SIZES = flags.DEFINE_list("block_sizes", ["1"],
                                 "Block sizes for our kernel.")
_IMPL = flags.DEFINE_string("impl", "auto", "bsmm implementation.")
_SEGMENT = flags.DEFINE_integer("segment", 16, "Most layers per kernel call; "
                                "finished inputs are dropped between calls.")
_BATCH = flags.DEFINE_integer("batch_size", 4096, "Inputs streamed through "
                              "our kernel and dense at a time.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed runs (best kept).")
_OUT = flags.DEFINE_string("output_dir", "out/graph_challenge",
                           "Where the CSV/JSON table goes.")
flags.adopt_module_key_flags(distributed_flags)


def _images(data_dir: str):
  for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
    path = find_idx(data_dir, stem)
    if path is not None:
      return read_idx(path), path
  raise app.UsageError(f"no MNIST IDX image file in {data_dir!r} (expected "
                       "train- or t10k-images-idx3-ubyte[.gz])")


def main(argv):
  del argv
  if (_OFFICIAL_DIR.value is None) == (_DATA_DIR.value is None):
    raise app.UsageError("give exactly one of --official_dir (the official "
                         "network) and --data_dir (look-alike networks)")
  try:
    sizes = [int(s) for s in _SIZES.value]
    layer_counts = [int(l) for l in _LAYERS.value]
    block_sizes = tuple(int(b) for b in _BLOCK_SIZES.value)
  except ValueError as e:
    raise app.UsageError(f"--sizes, --layers and --block_sizes take integers: {e}")
  common = dict(block_sizes=block_sizes, impl=_IMPL.value, segment=_SEGMENT.value,
                repeats=_REPEATS.value, batch_size=_BATCH.value)
  rows = []
  try:
    distributed_flags.maybe_initialize()
    if _DATA_DIR.value is not None:
      images, source = _images(_DATA_DIR.value)
      images = images[:_INPUTS.value] if _INPUTS.value else images
    for n in sizes:
      for n_layers in layer_counts:
        if _OFFICIAL_DIR.value is not None:
          print(f"official n={n} layers={n_layers} ...", flush=True)
          rows += gc.run_official(_OFFICIAL_DIR.value, n_neurons=n,
                                  n_layers=n_layers, n_inputs=_INPUTS.value,
                                  **common)
        else:
          print(f"look-alike n={n} layers={n_layers} inputs={len(images)} ...",
                flush=True)
          rows += [{**r, "inputs_path": source} for r in gc.run_challenge(
              n, n_layers, images, **common)]
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  if jax.process_index() != 0:  # process 0 reports for the whole job
    failed = gc.kernel_failures(rows)
    if failed:
      raise SystemExit(1)
    return
  env = {**{f"device_{k}": v for k, v in device_info().items()},
         **{f"version_{k}": v for k, v in versions().items()}}
  for r in rows:
    r.update(env)
  print(f"{'network':>10} {'n':>6} {'layers':>6} {'method':>10} {'seconds':>9} "
        f"{'edges/s':>10} {'vs scipy':>8} {'categories':>10} {'match':>5} "
        f"{'peak GB':>7} reference")
  for r in rows:
    ref = next((q for q in rows if q["method"] == "scipy" and
                (q["n_neurons"], q["n_layers"]) == (r["n_neurons"], r["n_layers"])),
               None)
    vs = (f"{r['edges_per_second'] / ref['edges_per_second']:8.2f}" if ref
          else f"{'-':>8}")
    print(f"{r['network']:>10} {r['n_neurons']:6d} {r['n_layers']:6d} "
          f"{r['method']:>10} {r['seconds']:9.3f} {r['edges_per_second']:10.3g} "
          f"{vs} {r['categories']:10d} {str(r['categories_match']):>5} "
          + (f"{r['peak_rss_bytes'] / 1e9:7.2f} " if "peak_rss_bytes" in r
             else f"{'-':>7} ")
          + f"{r['reference']}"
          + (f"  ({r['processes']} processes, inputs "
             f"{r['inputs_per_process']})" if "processes" in r else ""))
  os.makedirs(_OUT.value, exist_ok=True)
  stem = "graph_challenge_" + datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
  write_rows(rows, _OUT.value, stem)
  print(f"wrote {_OUT.value}/{stem}.{{csv,json}}")
  baselines = [r for r in rows if not r["categories_match"]
               and not gc.is_ours(r["method"])]
  for r in baselines:
    print(f"note: the {r['method']} baseline disagrees with the "
          f"{r['reference']} (n={r['n_neurons']}, layers={r['n_layers']})")
  failed = gc.kernel_failures(rows)
  if failed:
    raise SystemExit("our kernel's categories differ from the reference: " +
                     ", ".join(f"{r['method']} n={r['n_neurons']} layers="
                               f"{r['n_layers']}" for r in failed))


if __name__ == "__main__":
  cli.run(main)
