"""The "LeNet-5" of Alford et al. 2019 (arXiv:1810.00299): TensorFlow's
CIFAR-10 tutorial network adapted to MNIST, as the first author's code
(simonalford42/Kepner-sparse-nn, via ``../shared/papers/README.md``) builds
it -- not LeCun's classic LeNet-5 (that one is :class:`LeNet5`).

  conv 5x5, 1 -> 20, SAME, ReLU -> max-pool 2x2/2 -> local response norm
  -> conv 5x5, 20 -> 50, SAME, ReLU -> local response norm -> max-pool 2x2/2
  -> flatten 7*7*50 = 2,450 -> fully connected 384, ReLU -> 10 logits

Every weight layer is a :class:`SparseDense` with a *weight-level*
topology: the convolutions' over their patch features (``in_channels *
25`` rows, channel-major as ``lax.conv_general_dilated_patches`` orders
them, times ``out_channels``; the forward pass scatters them into a dense
kernel, see ``_conv``), so a magnitude-pruned convolution keeps exactly
its surviving weights (Alford et al. prune per weight, every layer
carrying a mask) and gradual pruning and optimizer-state remapping treat
the four layers like an MLP's (``model.layers``).

Initialisation (the tutorial's, which the authors' code keeps):
convolutions truncated normal std 0.05, biases 0; the 384-unit layer std
0.04, bias 0.1; the logits std 1/384, bias 0 (the tutorial's 1/192 scaled
to the width). The logits get no ReLU (the tutorial's are linear). Local response normalisation: depth radius 4, bias 1,
alpha 0.001/9, beta 0.75 (``tf.nn.lrn``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from snn_jax.nn._layers import SparseDense, SparseLayerStack
from snn_jax.topology import Topology, make

KERNEL = (5, 5)


def local_response_norm(x: jax.Array, depth_radius: int = 4, bias: float = 1.0,
                        alpha: float = 0.001 / 9.0, beta: float = 0.75
                        ) -> jax.Array:
  """``tf.nn.lrn`` over the last axis of ``x[..., C]``: each channel
  divided by ``(bias + alpha * sum of squares over the 2r+1 channels
  around it) ** beta``."""
  sq = jnp.square(x)
  pad = [(0, 0)] * (x.ndim - 1) + [(depth_radius, depth_radius)]
  csum = jnp.cumsum(jnp.pad(sq, pad), axis=-1)
  csum = jnp.pad(csum, [(0, 0)] * (x.ndim - 1) + [(1, 0)])
  c = x.shape[-1]
  window = csum[..., 2 * depth_radius + 1:2 * depth_radius + 1 + c] - csum[..., :c]
  return x / jnp.power(bias + alpha * window, beta)


class AlfordLeNet5(SparseLayerStack, nnx.Module):
  """``x[B, 784] or [B, 28, 28(, 1)] -> logits[B, 10]`` (module docstring).

  Args:
    topologies: four weight-level topologies of shapes ``(25, 20)``,
      ``(500, c2)``, ``(49 * c2, h)``, ``(h, n_classes)`` -- the authors'
      network has ``c2 = 50`` channels after the second convolution and
      ``h = 384``; their "wider" variants multiply ``c2``. None = the
      authors' network, all dense, 10 classes.
    impl: ``bsmm`` implementation of the fully connected layers.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  CONV1 = (25, 20)
  WIDTHS = (50, 384)  # conv2 channels, fully connected width

  def __init__(self, topologies: Sequence[Topology] | None = None, *,
               impl: str = "auto", rngs: nnx.Rngs):
    if topologies is None:
      topologies = self.dense_topologies(self.WIDTHS, 10)
    topologies = list(topologies)
    shapes = [(t.n_in, t.n_out) for t in topologies]
    ok = (len(shapes) == 4 and shapes[0] == self.CONV1
          and shapes[1][0] == 20 * 25 and shapes[2][0] == 49 * shapes[1][1]
          and shapes[3][0] == shapes[2][1])
    if not ok:
      raise ValueError(
          f"Alford's LeNet-5 needs weight-level topologies of shapes (25, 20), "
          f"(500, c2), (49*c2, h), (h, n_classes) -- the authors': (25, 20), "
          f"(500, 50), (2450, 384), (384, 10); got {shapes}")
    h = shapes[2][1]
    inits = ("truncated_normal:0.05", "truncated_normal:0.05",
             "truncated_normal:0.04", f"truncated_normal:{1 / h}")
    biases = (0.0, 0.0, 0.1, 0.0)
    self.layers = nnx.List([
        SparseDense(t, init=init, bias_init=b, impl=impl, rngs=rngs)
        for t, init, b in zip(topologies, inits, biases)])

  @staticmethod
  def layer_shapes(widths: Sequence[int], n_classes: int
                   ) -> list[tuple[int, int]]:
    """The four weight-level shapes for ``widths = (c2, h)``."""
    c2, h = widths
    return [(25, 20), (500, c2), (49 * c2, h), (h, n_classes)]

  @classmethod
  def dense_topologies(cls, widths: Sequence[int], n_classes: int
                       ) -> list[Topology]:
    return [make("dense", a, b) for a, b in cls.layer_shapes(widths, n_classes)]

  def _conv(self, layer: SparseDense, x: jax.Array) -> jax.Array:
    # The kernel is scattered from the layer's stored weights and applied
    # as a dense convolution: on a CPU, extracting the patches for a sparse
    # patch-matrix product (conv_general_dilated_patches) is itself a
    # convolution with a 25*C-wide identity kernel -- 4.9 GMAC per batch of
    # 100 for the second layer, ten times the dense convolution.
    c_in = layer.n_in // (KERNEL[0] * KERNEL[1])
    kernel = layer.dense_kernel().reshape(c_in, *KERNEL, layer.n_out)
    y = jax.lax.conv_general_dilated(
        x, jnp.transpose(kernel, (1, 2, 0, 3)), (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + layer.bias.get_value()[None, None, None, :]

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x.reshape(x.shape[0], 28, 28, 1)
    elif x.ndim == 3:
      x = x[..., None]
    pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = local_response_norm(pool(jax.nn.relu(self._conv(self.layers[0], x))))
    h = pool(local_response_norm(jax.nn.relu(self._conv(self.layers[1], h))))
    h = jax.nn.relu(self.layers[2](h.reshape(h.shape[0], -1)))
    return self.layers[3](h)

  def topologies(self) -> list[Topology]:
    """The four weight-level topologies (not chained: the convolutions'
    rows are patch features)."""
    return [layer.topology() for layer in self.layers]

  def __repr__(self) -> str:
    return "AlfordLeNet5(\n" + "\n".join(f"  {l!r}" for l in self.layers) + ")"

  __str__ = __repr__
