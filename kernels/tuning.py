"""Measured implementation choices and tile sizes (read by ``impl="auto"``).

``XLA_STRATEGY`` maps a block size to the XLA kernel strategy (see
``kernels/xla.py``). Chosen from ``experiments/bench_kernels.py --suite=cpu``
on the 2-core CPU (results in ``benchmarks/cpu/``): the per-block loop wins
from block size 8 up; below it the chunked gather/scatter-add wins (block 1,
density 0.01, n=4096, batch 256: chunks 7 ms against far slower per-block
stepping).

``GPU_TILES[device_kind][(block_size, dtype_name)]`` holds Pallas GPU launch
parameters. No GPU was available when these were written, so every GPU
entry is the labelled, *untuned* ``DEFAULT_GPU``; ``auto`` still chooses
Pallas on GPU for block sizes >= 16.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GpuTiles:
  batch_tile: int = 64
  num_warps: int = 4
  num_stages: int = 2


DEFAULT_GPU = GpuTiles()  # Untuned: no device measurement yet.
GPU_TILES: dict[str, dict[tuple[int, str], GpuTiles]] = {}

TPU_BATCH_TILE = 128  # Untuned default.

# Block sizes below this use the "chunks" XLA strategy.
XLA_BLOCKS_MIN_BLOCK_SIZE = 8
XLA_CHUNK = 1024


def xla_strategy(block_size: int) -> str:
  return "blocks" if block_size >= XLA_BLOCKS_MIN_BLOCK_SIZE else "chunks"


def gpu_tiles(device_kind: str, block_size: int, dtype_name: str) -> GpuTiles:
  return GPU_TILES.get(device_kind, {}).get((block_size, dtype_name), DEFAULT_GPU)
