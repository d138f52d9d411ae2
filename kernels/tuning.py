"""Measured implementation choices and tile sizes (read by ``impl="auto"``).

XLA strategy (``kernels/xla.py``), measured on the 2-core CPU (x86-64,
n = 4096, batch 256, f32, forward, ms; BUILD_NOTES.md has the table):

  ==== ======== ======== ============= ================
  bs   density  nnzb     blocks        chunks (2048 rows)
  ==== ======== ======== ============= ================
  8    0.1      26,406   76.5          32.0
  16   0.1      6,648    24.4          15.7
  32   0.1      1,686    13.4          10.8
  32   0.01     144      1.13          1.90
  64   0.1      434      7.45          9.45
  128  0.5      533      43.7          34.6
  128  0.01     11       0.65          1.05
  ==== ======== ======== ============= ================

so: ``"chunks"`` for block sizes up to 16 or at least 512 stored blocks,
``"blocks"`` otherwise; a chunk holds about 2,048 input rows
(``2048 // bs`` blocks, at most nnzb). Both depend only on static shapes, so
adaptive training at fixed nnzb never switches strategy.

Accelerator tiles are chosen for the device a program is compiled for --
``bsmm`` passes the target's ``device_kind`` (``jax.default_device`` when
set, so a deviceless compile for an H100 or a TPU gets that card's tiles,
not the host's). ``GPU_TILES`` and ``TPU_TILES`` map a device-kind
*family* (a substring of ``device_kind``: "H100", "A100", "TPU v5 lite",
...) to per ``(block_size, dtype_name)`` entries; a kind or shape without an
entry gets the default rule. No accelerator has been available to time
them, so every entry is *untuned*: the GPU default is the one that ptxas
compiles without register spills for every shipped block size on the H100
and A100 descriptions (``tests/kernels/test_accel_compile.py`` reads
ptxas' report); BUILD_NOTES.md says what waits for a device.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GpuTiles:
  """Launch parameters of the Pallas Triton kernels (``kernels/pallas_gpu``)."""
  batch_tile: int = 64
  num_warps: int = 4
  num_stages: int = 2


def default_gpu_tiles(block_size: int, dtype_name: str) -> GpuTiles:
  """The untuned default. Four warps hold the float32 accumulators
  (``batch_tile x bs`` for the forward and dX, ``bs x bs`` for dW) in
  registers up to block size 64; at 128, float32, ptxas spilled 152-240
  bytes per thread at 255 registers on sm_90a, so from there the default
  uses eight warps (twice the registers per program, half per thread).
  bfloat16 at 128 compiles without spills on four."""
  wide = block_size >= 128 and dtype_name == "float32"
  return GpuTiles(num_warps=8 if wide else 4)


# device-kind family -> {(block_size, dtype_name): tiles}, where the default
# does not do. A100, block 16, bfloat16: with two stages ptxas spilled 8
# bytes in the forward kernel (40 registers, sm_80); three stages compile
# without (48). Untimed, like the default.
GPU_TILES: dict[str, dict[tuple[int, str], GpuTiles]] = {
    "A100": {(16, "bfloat16"): GpuTiles(num_stages=3)},
}

# Batch tile of the Mosaic TPU kernels, per device-kind family; untuned.
TPU_DEFAULT_BATCH_TILE = 128
TPU_TILES: dict[str, dict[tuple[int, str], int]] = {}


def _family_entry(table: dict, device_kind: str, key):
  for family, entries in table.items():
    if family in device_kind and key in entries:
      return entries[key]
  return None


XLA_CHUNK_ROWS = 2048

# Density from which ``impl="auto"`` on CPU multiplies densely instead of
# with the native kernel: where the native kernel's fwd+dX+dW speedup over
# dense ``jnp.dot`` crosses 1, interpolated log-log between the measured
# densities on either side (n = 4096, batch 256, f32; the measurement and
# its speedups are in BUILD_NOTES.md, "When dense wins"). Between block
# sizes: log-log interpolation.
CPU_DENSE_FROM_DENSITY = {1: 0.29, 8: 0.32, 32: 0.72, 128: 0.64}


def xla_strategy(block_size: int, nnzb: int) -> str:
  """The XLA kernel strategy for a block size and block count (see above)."""
  return "chunks" if block_size <= 16 or nnzb >= 512 else "blocks"


def xla_chunk(block_size: int, nnzb: int) -> int:
  """Blocks per chunk for the "chunks" strategy."""
  return max(1, min(max(nnzb, 1), XLA_CHUNK_ROWS // block_size))


def gpu_tiles(device_kind: str, block_size: int, dtype_name: str) -> GpuTiles:
  """Tiles for the Pallas GPU kernels on ``device_kind`` (e.g. "NVIDIA H100
  80GB HBM3"): the table's entry for its family, else the default rule."""
  found = _family_entry(GPU_TILES, device_kind, (block_size, dtype_name))
  return found if found is not None else default_gpu_tiles(block_size,
                                                           dtype_name)


def tpu_batch_tile(device_kind: str, block_size: int, dtype_name: str) -> int:
  """Batch tile of the Pallas TPU kernels on ``device_kind`` (e.g. "TPU v5
  lite"): the table's entry for its family, else the default."""
  found = _family_entry(TPU_TILES, device_kind, (block_size, dtype_name))
  return found if found is not None else TPU_DEFAULT_BATCH_TILE


def cpu_dense_threshold(block_size: int) -> float:
  """The density from which dense beats the native CPU kernel at this block
  size (``CPU_DENSE_FROM_DENSITY``, interpolated in log block size)."""
  import math
  sizes = sorted(CPU_DENSE_FROM_DENSITY)
  if block_size <= sizes[0]:
    return CPU_DENSE_FROM_DENSITY[sizes[0]]
  if block_size >= sizes[-1]:
    return CPU_DENSE_FROM_DENSITY[sizes[-1]]
  hi = next(b for b in sizes if b >= block_size)
  lo = max(b for b in sizes if b <= block_size)
  if lo == hi:
    return CPU_DENSE_FROM_DENSITY[lo]
  t = (math.log(block_size) - math.log(lo)) / (math.log(hi) - math.log(lo))
  return math.exp((1 - t) * math.log(CPU_DENSE_FROM_DENSITY[lo])
                  + t * math.log(CPU_DENSE_FROM_DENSITY[hi]))

# Weight-level sparse convolution on CPU (``snn_jax.conv``, impl "auto"):
# the native kernels below this kernel density, XLA's dense convolution at
# or above it. Measured on Alford's conv2 (20 -> 50 channels, 14 x 14,
# batch 100), forward + dX + dW (benchmarks/lenet5_step.py, part 2;
# benchmarks/cpu/lenet5_step_20261207.json, AVX-512): the native kernels
# took 0.11x XLA's time at density 0.05, 0.18x at 0.1, 0.42x at 0.25,
# 0.64x at 0.5, 0.96x at 0.7 -- a tie within this machine's noise -- and
# 0.86x at 1.0; at 500 output channels 0.62x at 0.3. From 0.6 the choice
# is XLA's, whose dense kernel does not depend on the pattern.
CPU_CONV_DENSE_THRESHOLD = 0.6
