r"""Benchmark the block-sparse kernels against dense and other sparse formats.

CPU suite (the kernel issue's CPU targets; about 10 minutes on 2 cores):

  python experiments/bench_kernels.py --suite=cpu

writes ``<output_dir>/bench_<suite>_<date>.{csv,json}``, the summary table
and ``speedup_<op>.png`` (default output_dir ``out/bench_kernels``; pass
``--output_dir=benchmarks/cpu`` to commit a measurement). ``--suite=smoke``
is a seconds-long check of every implementation.

On an accelerator, one command validates every kernel against the dense
product on the device and times it against the dense matmul (cuBLAS / the
TPU's), with the ideal line (density x dense):

  python experiments/bench_kernels.py --suite=gpu --output_dir=benchmarks/gpu
  python experiments/bench_kernels.py --suite=tpu --output_dir=benchmarks/tpu

``gpu``: n 8192, batch 4096, block sizes 16-128, densities 0.5-0.01,
float32 and bfloat16, the Triton kernels (``pallas``), the Mosaic GPU
forward (``mosaic_gpu``, on Hopper and newer) and dense; ``tpu``: block
sizes 128-512, the Mosaic TPU kernels and dense. Planned to finish within
10 minutes on one H100 (not yet run on one: BUILD_NOTES.md).

Any grid can be given by flags instead:

  python experiments/bench_kernels.py --sizes=1024,4096 --batches=256 \
      --densities=0.5,0.1,0.01,0.001 --block_sizes=1,16,64 \
      --impls=xla,dense,bcoo,bcsr,scipy --ops=fwd,dx,dw,fwd_bwd

Every timed implementation is first verified against the dense product.
"""

import datetime
import os

from absl import app, flags

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import bench
from snn_jax.analysis import write_rows

_SUITE = flags.DEFINE_enum("suite", None, ["cpu", "gpu", "tpu", "smoke"],
                           "A predefined grid (overrides the grid flags).")
_SIZES = flags.DEFINE_list("sizes", ["4096"], "Square layer sizes n_in = n_out.")
_BATCHES = flags.DEFINE_list("batches", ["256"], "Batch sizes.")
_DENSITIES = flags.DEFINE_list("densities", ["0.1", "0.01"], "Densities.")
_BLOCK_SIZES = flags.DEFINE_list("block_sizes", ["1", "32", "128"], "Block sizes.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32"], "float32 and/or bfloat16.")
_IMPLS = flags.DEFINE_list("impls", ["xla", "dense", "bcoo", "scipy"],
                           f"Implementations: {', '.join(bench.IMPLS)}.")
_OPS = flags.DEFINE_list("ops", list(bench.OPS), "fwd, dx, dw, fwd_bwd.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed repeats (median).")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 0.5, "Minimum timed seconds.")
_OUT = flags.DEFINE_string(
    "output_dir", "out/bench_kernels", "Where results go; pass "
    "--output_dir=benchmarks/<device> to commit a measurement.")

SUITES = {
    "cpu": bench.BenchConfig(
        sizes=(4096,), batches=(256,), densities=(0.5, 0.1, 0.01, 0.001),
        block_sizes=(1, 8, 32, 128),
        # BCOO left out: measured at 100-500x ideal, and 43 GB at
        # density >= 0.1.
        impls=("native_cpu", "xla", "csr_cpu", "dense", "bcsr", "scipy")),
    # XLA's gather kernels and BCOO are left out on accelerators: at this
    # size their gathered operands take tens of GB (they stay the CPU
    # suite's and the smoke suite's).
    "gpu": bench.BenchConfig(
        sizes=(8192,), batches=(4096,), densities=(0.5, 0.25, 0.1, 0.01),
        block_sizes=(16, 32, 64, 128), dtypes=("bfloat16", "float32"),
        impls=("pallas", "mosaic_gpu", "dense"), repeats=10, min_seconds=0.2),
    "tpu": bench.BenchConfig(
        sizes=(8192,), batches=(4096,), densities=(0.5, 0.25, 0.1, 0.01),
        block_sizes=(128, 256, 512), dtypes=("bfloat16", "float32"),
        impls=("pallas", "dense"), repeats=10, min_seconds=0.2),
    "smoke": bench.BenchConfig(
        sizes=(256,), batches=(32,), densities=(0.1,), block_sizes=(1, 16),
        impls=("native_cpu", "xla", "csr_cpu", "dense", "bcoo", "bcsr", "scipy"),
        repeats=2, min_seconds=0.0),
}


def main(argv):
  del argv
  if _SUITE.value:
    cfg = SUITES[_SUITE.value]
  else:
    try:
      cfg = bench.BenchConfig(
          sizes=tuple(int(s) for s in _SIZES.value),
          batches=tuple(int(b) for b in _BATCHES.value),
          densities=tuple(float(d) for d in _DENSITIES.value),
          block_sizes=tuple(int(b) for b in _BLOCK_SIZES.value),
          dtypes=tuple(_DTYPES.value), impls=tuple(_IMPLS.value),
          ops=tuple(_OPS.value), repeats=_REPEATS.value,
          min_seconds=_MIN_SECONDS.value)
    except ValueError as e:
      raise app.UsageError(f"bad grid flag: {e}") from None
  try:
    rows = bench.run_grid(cfg)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  out_dir = _OUT.value
  os.makedirs(out_dir, exist_ok=True)
  stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
  stem = f"bench_{_SUITE.value or 'custom'}_{stamp}"
  write_rows(rows, out_dir, stem)
  for op in cfg.ops:
    bench.plot_speedup(rows, os.path.join(out_dir, f"{stem}_speedup_{op}.png"), op)
  table = bench.summary_table(rows)
  with open(os.path.join(out_dir, f"{stem}_summary.txt"), "w") as f:
    f.write(table + "\n")
  print(table)
  print(f"wrote {out_dir}/{stem}.{{csv,json}}, summary and plots")


if __name__ == "__main__":
  cli.run(main)
