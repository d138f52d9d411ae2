"""The fused Graph Challenge inference on the official network: its
`sparse_below` threshold swept, and the per-layer cost of the saturated
tail (the inputs that survive layer 8), fused against the `bsmm` scan.

  python benchmarks/relu_layers_sweep.py \
      --official_dir=../shared/datasets/graph_challenge \
      --output=benchmarks/cpu/relu_layers_sweep_<date>.json

Every timing is the best and the median of --repeats runs after a warm-up,
all in one process, interleaved per repeat so that drift hits every
variant alike. Needs the native CPU kernels.
"""

import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from snn_jax import graph_challenge as gc
from snn_jax.kernels import native_cpu
from snn_jax.utils.env import device_info, versions

_DIR = flags.DEFINE_string("official_dir", "../shared/datasets/graph_challenge",
                           "The challenge's official files.")
_OUT = flags.DEFINE_string("output", None, "Where the JSON goes.", required=True)
_REPEATS = flags.DEFINE_integer("repeats", 15, "Timed runs per variant.")
_THRESHOLDS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 1.01)


def _fused(net, sparse_below, start, length):
  ix = net.index
  col_values, col_rows = net.column_view
  return jax.jit(lambda y: native_cpu.relu_layers_native(
      y, net.values, ix["col_idx"], ix["row_ptr"], col_values, col_rows,
      ix["col_ptr"], start, length=length, bias=gc.BIAS[net.n_neurons],
      ymax=gc.YMAX, sparse_below=sparse_below))


def _time(variants, repeats):
  """{name: [seconds...]} of every fn in `variants`, interleaved."""
  for fn in variants.values():
    fn()
  times = {name: [] for name in variants}
  for _ in range(repeats):
    for name, fn in variants.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return {name: {"best_s": min(t), "median_s": float(np.median(t))}
          for name, t in times.items()}


def main(argv):
  del argv
  data = gc.read_official(_DIR.value, 1024, 120)
  net = gc.stack_network(data.layers, 1)
  y0 = jnp.asarray(data.inputs.toarray().astype(np.float32))
  # Every threshold over all 120 layers and all inputs (the fused op drops
  # dying inputs itself).
  variants = {f"sparse_below={sb}": (lambda f=_fused(net, sb, 0, 120):
                                     f(y0).block_until_ready())
              for sb in _THRESHOLDS}
  sweep = _time(variants, _REPEATS.value)
  # The tail: the inputs alive after layer 8, through layers 8..119.
  y = sp.csr_matrix(data.inputs, dtype=np.float32)
  for w in data.layers[:8]:
    y = y @ w
    y.data = np.clip(y.data + gc.BIAS[1024], 0, gc.YMAX)
    y.eliminate_zeros()
  alive = np.unique(y.tocoo().row)
  tail = jnp.asarray(y.toarray()[alive])
  scan = gc._segment_runner(1024, 1, "native_cpu")  # pylint: disable=protected-access
  fused_tail = _fused(net, 0.35, 8, 112)
  tail_times = _time({
      "fused": lambda: fused_tail(tail).block_until_ready(),
      "bsmm_scan_16": lambda: [scan(net.values, net.index, tail, s, length=16)
                               .block_until_ready() for s in range(8, 120, 16)],
  }, _REPEATS.value)
  for t in tail_times.values():
    t["per_layer_ms"] = t["best_s"] / 112 * 1e3
  result = {"network": "official 1024 x 120", "inputs": int(y0.shape[0]),
            "inputs_path": data.paths["inputs"], "repeats": _REPEATS.value,
            "sweep_all_layers": sweep,
            "tail": {"rows": int(alive.size), "layers": 112, **tail_times},
            "threads": native_cpu.num_threads(),
            **{f"device_{k}": v for k, v in device_info().items()},
            **{f"version_{k}": v for k, v in versions().items()}}
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1)
  for name, t in sweep.items():
    print(f"{name:>20}: best {t['best_s'] * 1e3:7.1f} ms  median {t['median_s'] * 1e3:7.1f} ms")
  for name, t in tail_times.items():
    print(f"tail {name:>14}: {alive.size} rows, {t['per_layer_ms']:.3f} ms per layer")
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
