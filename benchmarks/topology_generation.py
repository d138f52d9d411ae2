"""How long every topology generator takes to build one large layer.

For each generator of ``snn_jax.topology.names()`` that takes a density
(``dense`` and ``pruned`` do not; ``clos`` spans consecutive layers and is
built by ``make_stack``), one ``n x n`` layer at ``--density`` is built
``--repeats`` times in this process, and then its ``BlockCSR``
(``snn_jax.sparse.BlockCSR.from_coo``: the block metadata, transpose view
included). Reported per generator: the best build time, the BlockCSR
time, the edges built and the density reached. A generator that cannot
reach the density says why (``ValueError``), and the row records the
message instead of a time.

Usage: python benchmarks/topology_generation.py --n=65536 --density=0.001 \
         --out=benchmarks/cpu/topology_generation_<date>.json
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = {"dense": "no density parameter", "pruned": "needs a dense matrix",
           "clos": "spans consecutive layers (make_stack)"}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=65536)
  parser.add_argument("--density", type=float, default=0.001)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, ROOT)
  from snn_jax import topology
  from snn_jax.sparse import BlockCSR
  from snn_jax.utils import env

  rows = []
  for name in topology.names():
    if name in SKIPPED:
      rows.append({"generator": name, "skipped": SKIPPED[name]})
      continue
    try:
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        t = topology.make(name, args.n, args.n, density=args.density, seed=0)
        times.append(time.perf_counter() - t0)
    except ValueError as err:
      rows.append({"generator": name, "refused": str(err)})
      print(f"{name:20s} refused: {err}")
      continue
    t0 = time.perf_counter()
    BlockCSR.from_coo(t.rows, t.cols, shape=(args.n, args.n), block_size=1)
    bcsr_s = time.perf_counter() - t0
    row = {"generator": name, "build_seconds_best": min(times),
           "build_seconds": times, "blockcsr_seconds": bcsr_s,
           "edges": int(t.nnzb), "density": float(t.density)}
    rows.append(row)
    print(f"{name:20s} {min(times):7.2f} s  BlockCSR {bcsr_s:5.2f} s  "
          f"{t.nnzb:,} edges  density {t.density:.5f}")
  result = {
      "what": __doc__.split("\n")[0], "n": args.n, "density": args.density,
      "repeats": args.repeats, "rows": rows,
      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
      "device": env.device_info(), "versions": env.versions()}
  from snn_jax.utils import write_json
  write_json(args.out, result)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
