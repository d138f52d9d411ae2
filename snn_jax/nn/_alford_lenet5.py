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
them, times ``out_channels``), so a magnitude-pruned convolution keeps
exactly its surviving weights (Alford et al. prune per weight, every layer
carrying a mask), and gradual pruning and optimizer-state remapping treat
the four layers like an MLP's (``model.layers``). The convolutions run
``snn_jax.conv.sparse_conv2d`` (``conv_impl``): on a CPU below the measured
density natively, on the stored weights only; otherwise as XLA's dense
convolution of the scattered kernel.

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
import numpy as np
from flax import nnx

from snn_jax.conv import CONV_IMPLS
from snn_jax.nn._layers import SparseDense, SparseLayerStack
from snn_jax.topology import Topology, make

KERNEL = (5, 5)


def local_response_norm(x: jax.Array, depth_radius: int = 4, bias: float = 1.0,
                        alpha: float = 0.001 / 9.0, beta: float = 0.75,
                        axis: int = -1) -> jax.Array:
  """``tf.nn.lrn`` over ``axis`` (the channels; ``tf.nn.lrn``'s is the
  last): each channel divided by ``(bias + alpha * sum of squares over the
  2r+1 channels around it) ** beta``.

  The window sums are one matmul with the ``C x C`` band of ones (a dense
  ``jnp.dot``, fast on every backend), and the power is ``exp(-beta *
  log(.))``: on the 2-core CPU a cumulative-sum form and ``jnp.power``
  cost more than the network's convolutions in the training step
  (BUILD_NOTES.md, "The sparse convolution")."""
  axis = axis % x.ndim
  c = x.shape[axis]
  i = np.arange(c)
  band = jnp.asarray(np.abs(i[:, None] - i[None, :]) <= depth_radius, x.dtype)
  sq = jnp.moveaxis(jnp.square(x), axis, -1) if 0 < axis < x.ndim - 1 else \
      jnp.square(x)
  if axis == 0:
    window = jnp.dot(band, sq.reshape(c, -1)).reshape(sq.shape)
  else:
    window = jnp.dot(sq.reshape(-1, c), band).reshape(sq.shape)
    if axis != x.ndim - 1:
      window = jnp.moveaxis(window, -1, axis)
  return x * jnp.exp(-beta * jnp.log(bias + alpha * window))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling, stride 2 (VALID), over axes 1 and 2 (the image rows
  and columns in both ``NHWC`` and ``CHWB``). Even sizes take the max of a
  reshape, whose gradient XLA computes much faster on a CPU than
  ``reduce_window``'s select-and-scatter; where a window holds several
  equal maxima, the gradient is shared among them rather than given to one
  (after a ReLU such ties are zeros, whose gradient the ReLU stops)."""
  n0, h, w, n3 = x.shape
  if h % 2 or w % 2:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                 (1, 2, 2, 1), "VALID")
  return x.reshape(n0, h // 2, 2, w // 2, 2, n3).max(axis=(2, 4))


class AlfordLeNet5(SparseLayerStack, nnx.Module):
  """``x[B, 784] or [B, 28, 28(, 1)] -> logits[B, 10]`` (module docstring).

  Args:
    topologies: four weight-level topologies of shapes ``(25, 20)``,
      ``(500, c2)``, ``(49 * c2, h)``, ``(h, n_classes)`` -- the authors'
      network has ``c2 = 50`` channels after the second convolution and
      ``h = 384``; their "wider" variants multiply ``c2``. None = the
      authors' network, all dense, 10 classes.
    impl: ``bsmm`` implementation of the fully connected layers.
    conv_impl: the convolutions' (``snn_jax.conv``: ``"auto"``,
      ``"native_cpu"``, ``"dense"``).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  CONV1 = (25, 20)
  WIDTHS = (50, 384)  # conv2 channels, fully connected width

  def __init__(self, topologies: Sequence[Topology] | None = None, *,
               impl: str = "auto", conv_impl: str = "auto", rngs: nnx.Rngs):
    if conv_impl not in CONV_IMPLS:
      raise ValueError(f"unknown conv_impl {conv_impl!r}; known: {CONV_IMPLS}")
    self.conv_impl = conv_impl
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

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x.reshape(x.shape[0], 28, 28, 1)
    elif x.ndim == 3:
      x = x[..., None]
    conv1, conv2, fc, logits = self.layers
    h = conv1.conv2d(x, KERNEL, impl=self.conv_impl)
    h = local_response_norm(max_pool_2x2(jax.nn.relu(h)))
    # The second convolution's activations stay plane-major (CHWB, batch
    # innermost: the native kernels' layout) up to the flatten, where they
    # are 4x smaller, when its kernel runs natively; NHWC otherwise, XLA's
    # own convolution layout.
    if conv2.conv_impl(self.conv_impl) == "native_cpu":
      h = conv2.conv2d(jnp.transpose(h, (3, 1, 2, 0)), KERNEL,
                       impl="native_cpu", layout="CHWB")
      h = max_pool_2x2(local_response_norm(jax.nn.relu(h), axis=0))
      h = jnp.transpose(h, (3, 1, 2, 0))
    else:
      h = conv2.conv2d(h, KERNEL, impl=self.conv_impl)
      h = max_pool_2x2(local_response_norm(jax.nn.relu(h)))
    h = jax.nn.relu(fc(h.reshape(h.shape[0], -1)))
    return logits(h)

  def topologies(self) -> list[Topology]:
    """The four weight-level topologies (not chained: the convolutions'
    rows are patch features)."""
    return [layer.topology() for layer in self.layers]

  def __repr__(self) -> str:
    return "AlfordLeNet5(\n" + "\n".join(f"  {l!r}" for l in self.layers) + ")"

  __str__ = __repr__
