"""This machine's roofline, and the bound it puts on each block-size-1
benchmark shape.

Builds ``roofline_probe.c`` with the machine's compiler (``-O3
-march=native -fopenmp``), runs it (read bandwidth from L1-sized to
DRAM-sized working sets, one thread and all; peak FMA rate), and derives a
lower bound on the time of the block-size-1 kernels at the shapes of
``benchmarks/peers.py``. The model, per stored weight (``nnz`` of them),
float32, batch ``B``:

* forward and dX: one row of the gathered operand (``4 B`` bytes, the
  feature-major input, or ``dY`` for dX) read and ``2 B`` flops; the output
  (``4 n B`` bytes) written once;
* dW: two such rows (an input column and an output-gradient column) and
  ``2 B`` flops.

The gathered operand (``4 n B`` bytes) is read from L2 when lane slicing
keeps each slice within half of one core's L2 (the kernels do this for
inputs larger than L2), so the memory bound uses the all-thread bandwidth
of the largest measured working set whose per-thread share fits half of
L2; the compute bound uses the all-thread FMA peak. Each op's bound is the
larger of the two; ``train`` is the sum of forward, dX and dW. With
``--peers`` (a ``benchmarks/peers.py`` result) every timed peer gets its
fraction of the bound (bound / measured: 1.0 would be at the limit).

Usage: python benchmarks/roofline_probe.py \\
         --peers=benchmarks/cpu/peers_<date>.json \\
         --out=benchmarks/cpu/roofline_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHAPES = ((4096, 256, 0.01), (1000, 128, 0.045), (4096, 256, 0.1))


def run_probe() -> dict:
  cc = os.environ.get("CC", "gcc")
  with tempfile.TemporaryDirectory() as tmp:
    exe = os.path.join(tmp, "probe")
    subprocess.run([cc, "-O3", "-march=native", "-fopenmp",
                    os.path.join(HERE, "roofline_probe.c"), "-o", exe],
                   check=True)
    out = subprocess.run([exe], check=True, capture_output=True, text=True)
  return json.loads(out.stdout)


def cache_bytes() -> dict[str, int]:
  """Per-core L1d and L2, and L3, in bytes: from sysfs (Linux), else
  ``sysconf`` (0 where neither says)."""
  out = {"L1d": 0, "L2": 0, "L3": 0}
  base = "/sys/devices/system/cpu/cpu0/cache"
  if os.path.isdir(base):
    for index in sorted(os.listdir(base)):
      try:
        with open(os.path.join(base, index, "level")) as f:
          level = f.read().strip()
        with open(os.path.join(base, index, "type")) as f:
          kind = f.read().strip()
        with open(os.path.join(base, index, "size")) as f:
          size = f.read().strip()
      except OSError:
        continue
      scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
      value = int(size.rstrip("KM")) * scale
      key = {"1": "L1d" if kind == "Data" else None, "2": "L2",
             "3": "L3"}.get(level)
      if key:
        out[key] = value
  names = {"L1d": "SC_LEVEL1_DCACHE_SIZE", "L2": "SC_LEVEL2_CACHE_SIZE",
           "L3": "SC_LEVEL3_CACHE_SIZE"}
  for k, name in names.items():
    if not out[k]:
      try:
        out[k] = max(int(os.sysconf(name)), 0)
      except (ValueError, OSError):
        pass
  return out


def l2_bandwidth(probe: dict, l2: int) -> tuple[float, int]:
  """All-thread GB/s of the largest working set whose per-thread share is
  at most half of L2 (and that working set's size)."""
  threads = probe["threads_all"]
  fits = [r for r in probe["read_gbs"] if r["bytes"] / threads <= l2 / 2]
  best = max(fits, key=lambda r: r["bytes"])
  return best["all_threads"], best["bytes"]


def bounds(n: int, batch: int, density: float, gbs: float, gflops: float
           ) -> dict[str, float]:
  """Lower bounds in ms for fwd, dx, dw and train (see the module doc)."""
  nnz = density * n * n
  row = 4.0 * batch
  out_bytes = 4.0 * n * batch
  flops = 2.0 * nnz * batch
  comp = flops / (gflops * 1e9) * 1e3
  fwd = max((nnz * row + out_bytes) / (gbs * 1e9) * 1e3, comp)
  dw = max((2 * nnz * row + 4 * nnz) / (gbs * 1e9) * 1e3, comp)
  return {"fwd": fwd, "dx": fwd, "dw": dw, "train": 2 * fwd + dw,
          "compute_ms": comp}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--peers", help="a benchmarks/peers.py result")
  parser.add_argument("--reuse_probe", help="take the probe's measurements "
                      "from an earlier result of this script instead of "
                      "running it (to rederive bounds, e.g. for new peers)")
  args = parser.parse_args(argv)
  sys.path.insert(0, ROOT)
  from snn_jax.utils import env
  if args.reuse_probe:
    with open(args.reuse_probe) as f:
      probe = json.load(f)["probe"]
  else:
    probe = run_probe()
  caches = cache_bytes()
  if not caches["L2"]:
    raise SystemExit("the L2 size is not readable here (sysfs, sysconf): "
                     "the bound needs it")
  gbs, ws = l2_bandwidth(probe, caches["L2"])
  gflops = probe["fma_gflops"]["all_threads"]
  shapes = []
  for n, batch, density in SHAPES:
    shapes.append({"n": n, "batch": batch, "density": density,
                   "bound_ms": bounds(n, batch, density, gbs, gflops)})
  result = {"what": __doc__.split("\n")[0], "probe": probe,
            "probe_from": args.reuse_probe or "this run", "caches": caches,
            "l2_gbs_used": gbs, "l2_working_set_bytes": ws,
            "fma_gflops_used": gflops, "shapes": shapes,
            "device": env.device_info(), "versions": env.versions()}
  if args.peers:
    with open(args.peers) as f:
      peers = json.load(f)
    rows = []
    for r in peers["rows"]:
      if "median_ms" not in r:
        continue
      b = bounds(r["n"], r["batch"], r["density"], gbs, gflops)[r["op"]]
      rows.append({"peer": r["peer"], "op": r["op"], "n": r["n"],
                   "batch": r["batch"], "density": r["density"],
                   "median_ms": r["median_ms"], "bound_ms": b,
                   "fraction_of_bound": b / r["median_ms"]})
    result["peers_file"] = os.path.relpath(args.peers, ROOT)
    result["peers"] = rows
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps({"read_gbs": probe["read_gbs"], "fma": probe["fma_gflops"],
                    "caches": caches, "l2_gbs_used": gbs}, indent=1))
  for s in shapes:
    print(s["n"], s["batch"], s["density"],
          {k: round(v, 3) for k, v in s["bound_ms"].items()})
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
