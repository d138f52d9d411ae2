"""What a jitted ``bsmm`` call pays for a BlockCSR whose arrays are on the host.

``BlockCSR``'s constructors keep the index arrays as NumPy arrays (and the
values as given). A jitted function that takes such a ``w`` as an argument
copies every host array to the device on every call. This times the
block-size-1 forward (``peers.py``'s problem, XLA choosing the layouts of
``x`` and ``y`` as in its ``snn_jax_free_layouts`` peer) three ways,
interleaved: ``w`` passed as built, passed after ``jax.device_put(w)``,
and closed over (its arrays become constants of the program).

  python benchmarks/host_index_arrays.py [--shape=1000:128:0.045] OUT.json
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import peers  # noqa: E402

from snn_jax.ops import bsmm  # noqa: E402
from snn_jax.sparse import BlockCSR  # noqa: E402
from snn_jax.utils.env import device_info, versions  # noqa: E402

CALLS, ROUNDS = 500, 6


def main(out: str, n: int, batch: int, density: float) -> None:
  rows, cols, vals, x, _ = peers._problem(n, batch, density)
  host = BlockCSR.from_coo(rows, cols, shape=(n, n), block_size=1,
                           values=vals.reshape(-1, 1, 1))
  placed = jax.device_put(host)
  xj = jnp.asarray(x)
  calls = {
      "host_arrays_as_argument": peers._free_layouts(
          lambda x, w: bsmm(x, w), (xj, host), (0,)),
      "device_put_once": peers._free_layouts(
          lambda x, w: bsmm(x, w), (xj, placed), (0,)),
      "closed_over": peers._free_layouts(
          lambda x: bsmm(x, placed), (xj,), (0,)),
  }
  ref = np.asarray(calls["device_put_once"]())
  for name, call in calls.items():
    np.testing.assert_array_equal(np.asarray(call()), ref, err_msg=name)
  times = {name: [] for name in calls}
  for _ in range(ROUNDS):
    for name, call in calls.items():
      for _ in range(CALLS):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times[name].append(time.perf_counter() - t0)
  rows_out = []
  for name, ts in times.items():
    ts = np.array(ts) * 1e3
    rows_out.append({"how": name, "median_ms": float(np.median(ts)),
                     "p25_ms": float(np.percentile(ts, 25)),
                     "p75_ms": float(np.percentile(ts, 75)),
                     "min_ms": float(ts.min()), "calls": int(ts.size)})
    print(f"{name:26s} median {rows_out[-1]['median_ms']:.3f} ms  "
          f"[p25 {rows_out[-1]['p25_ms']:.3f}, p75 {rows_out[-1]['p75_ms']:.3f}]")
  with open(out, "w") as f:
    json.dump({"what": __doc__.split("\n")[0], "n": n, "batch": batch,
               "density": float(rows.size / (n * n)), "rows": rows_out,
               "device": device_info(), "versions": versions()}, f, indent=1)


if __name__ == "__main__":
  args = [a for a in sys.argv[1:] if not a.startswith("--shape=")]
  shape = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--shape=")]
  if len(args) != 1:
    raise SystemExit(__doc__)
  n, b, d = (shape[-1] if shape else "1000:128:0.045").split(":")
  main(args[0], int(n), int(b), float(d))
