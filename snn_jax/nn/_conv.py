"""Channel-level sparse convolution and LeNet-5.

A ``SparseConv2D`` has a *channel-level* topology: a bipartite graph between
input and output channels (``Topology(in_ch, out_ch)``); a connected channel
pair carries a full ``kh x kw`` filter. The layer expands the channel graph
to the weight level (patch rows ``c * kh * kw + p``, channel-major) and
convolves with ``snn_jax.conv.sparse_conv2d`` -- natively on the stored
filters only where that is faster (``conv_impl``), so an a-priori-sparse
channel structure costs only its nonzero filters.

LeNet-5 (LeCun et al. 1998) as used by Alford et al. (arXiv:1810.00299) on
MNIST: conv 6@5x5 (same padding) - maxpool 2 - conv 16@5x5 - maxpool 2 -
dense 120 - dense 84 - dense 10, ReLU.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from flax import nnx

from snn_jax.conv import CONV_IMPLS
from snn_jax.nn._layers import SparseDense, SparseLayerStack, get_activation
from snn_jax.topology import Topology, make


def expand_channel_topology(t: Topology, kernel_size: tuple[int, int]) -> Topology:
  """Neuron-level topology over patch features: channel edge (c, o) becomes
  the ``kh*kw`` edges ``(c*kh*kw + p, o)``."""
  if t.block_size != 1:
    raise ValueError("channel topologies must have block_size 1")
  kk = int(np.prod(kernel_size))
  rows = (t.rows.astype(np.int64)[:, None] * kk + np.arange(kk)[None, :]).ravel()
  cols = np.repeat(t.cols.astype(np.int64), kk)
  return Topology(t.n_in * kk, t.n_out, rows, cols, name=f"{t.name}[conv]",
                  params=t.params)


class SparseConv2D(nnx.Module):
  """NHWC convolution whose input->output channel connections follow
  ``topology`` (``Topology(in_channels, out_channels)``).

  Shapes: ``x[B, H, W, in_channels] -> [B, H', W', out_channels]``.
  ``impl`` is unused by the convolution itself (it is the weight layer's
  ``bsmm`` implementation); ``conv_impl`` picks the convolution's
  (``snn_jax.conv.CONV_IMPLS``).
  """

  def __init__(self, topology: Topology, kernel_size: tuple[int, int] = (5, 5),
               *, padding: str = "VALID", init: str = "sparse_he",
               impl: str = "auto", conv_impl: str = "auto", rngs: nnx.Rngs):
    if conv_impl not in CONV_IMPLS:
      raise ValueError(f"unknown conv_impl {conv_impl!r}; known: {CONV_IMPLS}")
    self.kernel_size = tuple(kernel_size)
    self.padding = padding
    self.conv_impl = conv_impl
    self.in_channels, self.out_channels = topology.n_in, topology.n_out
    self.channel_topology_name = topology.name
    self.dense = SparseDense(expand_channel_topology(topology, self.kernel_size),
                             init=init, impl=impl, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"expected NHWC input with {self.in_channels} channels, "
                       f"got {x.shape}")
    return self.dense.conv2d(x, self.kernel_size, padding=self.padding,
                             impl=self.conv_impl)

  def __repr__(self) -> str:
    return (f"SparseConv2D({self.in_channels}->{self.out_channels}, "
            f"{self.kernel_size}, {self.channel_topology_name}, "
            f"nnz={self.dense.nnz:,})")

  __str__ = __repr__


class LeNet5(SparseLayerStack, nnx.Module):
  """LeNet-5 with sparse convolutions and sparse dense layers.

  ``x[B, 784] or [B, 28, 28(, 1)] -> logits[B, n_classes]``.

  Args:
    topologies: conv1 channels ``(1, 6)``, conv2 channels ``(6, 16)``, then
      the fully connected layers ``400 -> ... -> n_classes`` (classic
      LeNet-5: ``400 -> 120 -> 84 -> 10``; other hidden widths are allowed).
      ``None`` builds the classic network, all dense.
  """

  CONV_CHANNELS = ((1, 6), (6, 16))
  FC_INPUTS = 16 * 5 * 5

  def __init__(self, topologies: Sequence[Topology] | None = None, *,
               init: str = "sparse_he", impl: str = "auto",
               conv_impl: str = "auto", activation: str = "relu",
               rngs: nnx.Rngs):
    if topologies is None:
      topologies = [make("dense", a, b) for a, b in
                    [(1, 6), (6, 16), (400, 120), (120, 84), (84, 10)]]
    topologies = list(topologies)
    shapes = [(t.n_in, t.n_out) for t in topologies]
    chained = all(a.n_out == b.n_in for a, b in zip(topologies[2:], topologies[3:]))
    if (len(shapes) < 3 or tuple(shapes[:2]) != self.CONV_CHANNELS
        or shapes[2][0] != self.FC_INPUTS or not chained):
      raise ValueError(f"LeNet-5 needs topologies of shapes (1,6), (6,16), then "
                       f"chained fully connected layers from 400 (classic: "
                       f"(400,120), (120,84), (84,10)); got {shapes}")
    self.activation = get_activation(activation)
    self.conv1 = SparseConv2D(topologies[0], padding="SAME", init=init,
                              impl=impl, conv_impl=conv_impl, rngs=rngs)
    self.conv2 = SparseConv2D(topologies[1], padding="VALID", init=init,
                              impl=impl, conv_impl=conv_impl, rngs=rngs)
    self.channel_topologies = (topologies[0], topologies[1])
    self.fc = nnx.List([SparseDense(t, init=init, impl=impl, rngs=rngs)
                        for t in topologies[2:]])

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:  # flattened 28x28
      x = x.reshape(x.shape[0], 28, 28, 1)
    elif x.ndim == 3:
      x = x[..., None]
    pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = pool(self.activation(self.conv1(x)))
    h = pool(self.activation(self.conv2(h)))
    h = h.reshape(h.shape[0], -1)
    for l, layer in enumerate(self.fc):
      h = layer(h)
      if l < len(self.fc) - 1:
        h = self.activation(h)
    return h

  @property
  def layers(self) -> list[SparseDense]:
    """Every weight layer as a SparseDense: the two convolutions over their
    patch features (25 and 150 inputs), then the fully connected ones --
    the order of :meth:`dense_weights`."""
    return [self.conv1.dense, self.conv2.dense, *self.fc]

  def topologies(self) -> list[Topology]:
    """Channel-level topologies of the convolutions, then the fully
    connected layers' (the constructor's argument)."""
    return [*self.channel_topologies, *(layer.topology() for layer in self.fc)]

  # dense_weights (convolutions as float32[in_channels * 25, out_channels]
  # patch matrices), nnz, dense_equivalent: SparseLayerStack.
