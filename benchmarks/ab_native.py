"""Builds of the native CPU kernels side by side in one process.

On a noisy machine, two benchmark runs minutes apart differ by more than
most kernel changes do; this loads compiled ``_native_cpu`` modules
(e.g. the installed one and one built from another commit), registers each
under its own FFI target names, checks their results and times them
interleaved (best of 8 rounds). A build that sums in another order must
agree with the first to float32 rounding; each row records which builds
gave the first's bits. Shapes: at block size 1 the SET-MLP's 1000 x 1000
layer at batch 128 and the kernel grid's 4096 x 4096 at batch 256,
densities 0.01 and 0.1; at block sizes 32 and 128 the grid's 4096 x 4096
at batch 256, densities 0.01 and 0.1 (--block_sizes picks a subset,
e.g. --block_sizes=1). --shapes=N:BATCH:DENSITY:BS,... replaces the list,
e.g. --shapes=65536:128:0.001:1 for one layer of the giant MLP (large
shapes are drawn as random block coordinates, never as a dense matrix).

  cp kernels/_native_cpu_x86_64_v4*.so /tmp/before.so   # then rebuild
  python benchmarks/ab_native.py /tmp/before.so \
      kernels/_native_cpu_x86_64_v4*.so benchmarks/cpu/ab_native_<date>.json

Each build is ``PATH`` or ``LABEL=PATH`` (labels default to before, after,
build2, ...), optionally suffixed ``:batch_major`` or ``:feature_major`` for
builds whose kernels take the ``feature_major`` attribute:
``:feature_major`` hands the dense operands over laid out {0,1}, as
``snn_jax.ops`` does at block sizes that are not multiples of 32; here, with
batch-major arrays in and out of each jitted call, XLA transposes them
around the call (what a standalone call costs, not what it costs inside a
network, where the transposes fuse into the neighbours); ``:resident``
compiles the same calls with XLA choosing those layouts and the operands
placed in them once, so that only the kernel runs (what it costs inside a
network). The first build is the baseline of every ratio. The last
argument is the output JSON.
"""

import importlib.util
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.sparse import BlockCSR
from snn_jax.utils.env import device_info, versions

SHAPES = ((1000, 128, 0.04, 1), (4096, 256, 0.01, 1), (4096, 256, 0.1, 1),
          (4096, 256, 0.01, 32), (4096, 256, 0.1, 32),
          (4096, 256, 0.01, 128), (4096, 256, 0.1, 128))  # n, batch, density, bs
ROUNDS = 8


def _module_name(path: str) -> str:
  """The module name a build was compiled as (``_native_cpu_<target>``, or
  ``_native_cpu`` for builds before the per-target modules): the one whose
  ``PyInit_`` symbol the file exports, whatever the file is called."""
  import ctypes
  lib = ctypes.CDLL(os.path.abspath(path))
  from snn_jax.kernels import native_cpu
  for name in [f"_native_cpu_{t}" for t in native_cpu.TARGET_FEATURES] + ["_native_cpu"]:
    if hasattr(lib, f"PyInit_{name}"):
      return name
  raise SystemExit(f"{path}: not a build of the native CPU kernels")


def _load(tag: str, path: str) -> None:
  spec = importlib.util.spec_from_file_location(f"{tag}.{_module_name(path)}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name, capsule in module.handlers().items():
    jax.ffi.register_ffi_target(f"{tag}_{name}", capsule, platform="cpu")


def _ops(tag, operands, w, x, dy):
  """Each op of build ``tag`` as a call of no arguments on ``x``, ``dy`` and
  ``w.values``: jitted on batch-major arrays, or, for ``resident``, compiled
  with XLA choosing the dense operands' and the result's layouts (it picks
  the kernel's feature-major ones, so no copy runs around the kernel) and
  the operands placed in them once (``benchmarks/peers.py``'s
  ``_free_layouts``)."""
  batch = x.shape[0]
  n_in, n_out = w.shape
  fm = operands in ("feature_major", "resident")

  def call(name, shape, dense_args, dense_out, *args):
    kwargs = {}
    if fm:
      kwargs = dict(input_layouts=[(1, 0) if i in dense_args else None
                                   for i in range(len(args))],
                    output_layouts=(1, 0) if dense_out else None)
    f = jax.ffi.ffi_call(f"{tag}_snn_jax_{name}",
                         jax.ShapeDtypeStruct(shape, jnp.float32), **kwargs)
    return f(*args) if operands is None else f(*args, feature_major=fm)

  fns = {
      "fwd": lambda x, dy, v: call("bsmm_fwd", (batch, n_out), (0,), True,
                                   x, v, w.row_idx, w.col_ptr, w.col_order),
      "dx": lambda x, dy, v: call("bsmm_dx", (batch, n_in), (0,), True,
                                  dy, v, w.row_ptr, w.col_idx),
      "dw": lambda x, dy, v: call("bsmm_dw", v.shape, (0, 1), False,
                                  x, dy, w.row_idx, w.col_idx),
  }
  if operands != "resident":
    return {op: (lambda f: lambda: f(x, dy, w.values))(jax.jit(fn))
            for op, fn in fns.items()}
  from jax.experimental.layout import Format, Layout
  auto = Format(Layout.AUTO)
  out = {}
  for op, fn in fns.items():
    compiled = jax.jit(fn, in_shardings=(auto, auto, None), out_shardings=auto).lower(
        x, dy, w.values).compile()
    formats = compiled.input_formats[0]
    placed = (jax.device_put(x, formats[0]), jax.device_put(dy, formats[1]), w.values)
    out[op] = (lambda c, a: lambda: c(*a))(compiled, placed)
  return out


def _parse(args: list[str]) -> dict:
  builds = {}
  for i, arg in enumerate(args):
    label, sep, rest = arg.partition("=")
    if not sep:
      label, rest = "", arg
    label = label or (("before", "after")[i] if i < 2 else f"build{i}")
    path, _, operands = rest.partition(":")
    if operands not in ("", "batch_major", "feature_major", "resident"):
      raise SystemExit(f"{arg}: the suffix must be :batch_major, :feature_major "
                       f"or :resident, got :{operands}")
    builds[label] = (path, operands or None)
  if len(builds) < 2:
    raise SystemExit("give at least two builds")
  return builds


def _weights(rng: np.random.Generator, n: int, density: float, bs: int) -> BlockCSR:
  nb = n // bs
  if n <= 8192:
    mask = np.kron(rng.random((nb, nb)) < density, np.ones((bs, bs), bool))
    return BlockCSR.from_dense(jnp.asarray(mask * rng.standard_normal((n, n)),
                                           jnp.float32), bs)
  flat = np.unique(rng.integers(0, nb * nb, size=int(density * nb * nb)))
  values = rng.standard_normal((flat.size, bs, bs)).astype(np.float32)
  return BlockCSR.from_coo(flat // nb, flat % nb, shape=(n, n), block_size=bs,
                           values=values)


def main(args: list[str], output: str, block_sizes: set[int] | None = None,
         shapes: tuple[tuple[int, int, float, int], ...] = SHAPES) -> None:
  builds = _parse(args)
  for tag, (path, _) in builds.items():
    _load(tag, path)
  base = next(iter(builds))
  rng = np.random.default_rng(0)
  rows = []
  for n, batch, density, bs in shapes:
    if block_sizes is not None and bs not in block_sizes:
      continue
    w = _weights(rng, n, density, bs)
    x = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
    ops = {tag: _ops(tag, operands, w, x, dy)
           for tag, (_, operands) in builds.items()}
    reps = max(1, int(2e8 / (w.nnzb * bs * bs * batch)))
    for op in ("fwd", "dx", "dw"):
      outs = {tag: np.asarray(ops[tag][op]()) for tag in builds}
      same_bits = {}
      for tag, out in outs.items():
        same_bits[tag] = bool(np.array_equal(outs[base], out))
        # A build may sum in another order (then it must agree to float32
        # rounding of sums of batch-many products) but not compute otherwise.
        scale = np.abs(outs[base]).max() + 1e-30
        if not same_bits[tag] and np.abs(out - outs[base]).max() > 1e-5 * scale:
          raise SystemExit(f"{op} at n={n}: {tag} and {base} disagree beyond "
                           "float32 rounding")
      best = dict.fromkeys(builds, np.inf)
      for _ in range(ROUNDS):
        for tag in builds:
          f = ops[tag][op]
          t0 = time.perf_counter()
          for _ in range(reps):
            f().block_until_ready()
          best[tag] = min(best[tag], (time.perf_counter() - t0) / reps * 1e3)
      row = {"n": n, "batch": batch, "density": float(density), "block_size": bs,
             "op": op,
             "same_bits_as_" + base: same_bits,
             **{f"{tag}_ms": best[tag] for tag in builds},
             **{f"{tag}_over_{base}": best[tag] / best[base]
                for tag in builds if tag != base}}
      rows.append(row)
      print(f"n={n:5d} bs={bs:3d} batch={batch:4d} d={density:<5} {op:>3}: " + "  ".join(
          f"{tag} {best[tag]:7.3f} ms" for tag in builds) + "  " + "  ".join(
              f"{tag}/{base} {best[tag] / best[base]:.2f}"
              for tag in builds if tag != base))
  with open(output, "w") as f:
    json.dump({"builds": {t: {"path": p, "operands": o or "batch_major (no attribute)"}
                          for t, (p, o) in builds.items()},
               "rounds": ROUNDS, "rows": rows,
               **{f"device_{k}": v for k, v in device_info().items()},
               **{f"version_{k}": v for k, v in versions().items()}}, f, indent=1)
  print(f"wrote {output}")


if __name__ == "__main__":
  argv = [a for a in sys.argv[1:] if not a.startswith(("--block_sizes=", "--shapes="))]
  chosen = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--block_sizes=")]
  given = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--shapes=")]
  if len(argv) < 3:
    raise SystemExit(__doc__)
  shapes = SHAPES
  if given:
    try:
      shapes = tuple((int(n), int(b), float(d), int(bs)) for n, b, d, bs in
                     (item.split(":") for item in given[-1].split(",")))
    except ValueError as e:
      raise SystemExit(f"--shapes={given[-1]}: each shape is "
                       f"N:BATCH:DENSITY:BS ({e})") from None
  main(argv[:-1], argv[-1],
       {int(b) for b in chosen[-1].split(",")} if chosen else None, shapes)
