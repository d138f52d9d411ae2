"""Matplotlib figures of topologies (imported lazily; Agg backend)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from snn_jax.topology import Topology

# Masks with more blocks than this per side are drawn as a 2-D histogram of
# block coordinates (a density image) instead of a boolean image.
_MAX_IMAGE_SIDE = 1024


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_block_masks(stack: Sequence[Topology], path, title: str = "") -> None:
  """One panel per layer showing its block mask (inputs down, outputs
  across), or the block density where a layer is too large to draw."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(stack), figsize=(4 * len(stack), 4),
                           squeeze=False)
  for ax, t in zip(axes[0], stack):
    nr, nc = t.n_row_blocks, t.n_col_blocks
    if max(nr, nc) <= _MAX_IMAGE_SIDE:
      ax.imshow(t.block_mask(), cmap="Greys", interpolation="nearest",
                aspect="auto")
    else:
      h, _, _ = np.histogram2d(t.rows, t.cols,
                               bins=(min(nr, _MAX_IMAGE_SIDE), min(nc, _MAX_IMAGE_SIDE)),
                               range=((0, nr), (0, nc)))
      ax.imshow(h, cmap="Greys", interpolation="nearest", aspect="auto")
    ax.set_title(f"{t.n_in}x{t.n_out} bs={t.block_size}\ndensity {t.density:.3g}",
                 fontsize=9)
    ax.set_xlabel("output block")
    ax.set_ylabel("input block")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_degree_distributions(stack: Sequence[Topology], path,
                              title: str = "") -> None:
  """Histograms of fan-in and fan-out, one row per layer."""
  plt = _plt()
  fig, axes = plt.subplots(len(stack), 2, figsize=(8, 2.6 * len(stack)),
                           squeeze=False)
  for l, t in enumerate(stack):
    for ax, deg, label in ((axes[l, 0], t.fan_in(), "fan-in"),
                           (axes[l, 1], t.fan_out(), "fan-out")):
      lo, hi = int(deg.min()), int(deg.max())
      bins = np.arange(lo, hi + 2) - 0.5 if hi - lo < 60 else 40
      ax.hist(deg, bins=bins, color="tab:blue")
      ax.set_title(f"layer {l} {label} (mean {deg.mean():.1f})", fontsize=9)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
