"""Flax NNX modules built on ``snn_jax.ops.bsmm``.

Trainable block values are ``nnx.Param``; the index arrays of the topology
are ``TopologyVar`` -- non-trainable state that the optimizer never sees
(``nnx.Optimizer(..., wrt=nnx.Param)``) but that checkpoints carry and that
adaptive sparse training rewrites at fixed nnzb (same shapes, no retrace).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snn_jax.nn import _taps
from snn_jax.nn._activations import LEARNED_ACTIVATIONS
from snn_jax.nn._init import get_initializer, live_units
from snn_jax.conv import (add_channel_bias, conv2d_dense, resolve_conv_impl,
                          sparse_conv2d)
from snn_jax.ops import bsmm, target_device
from snn_jax.sparse import INDEX_FIELDS, BlockCSR, block_metadata
from snn_jax.topology import Topology



class TopologyVar(nnx.Variable):
  """Integer index arrays of a sparse layer (not trained)."""


_ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid, "swish": jax.nn.swish, "linear": lambda x: x,
}


def get_activation(name: str) -> Callable:
  """The parameter-free activation called ``name``."""
  if name in LEARNED_ACTIVATIONS:
    raise ValueError(f"activation {name!r} has parameters of its own (one "
                     f"{LEARNED_ACTIVATIONS[name].__name__} module per hidden "
                     "layer): only SparseMLP builds it")
  try:
    return _ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown activation {name!r}; known: "
                     f"{', '.join(sorted(_ACTIVATIONS))} and, in SparseMLP, "
                     f"{', '.join(sorted(LEARNED_ACTIVATIONS))}") from None


class SparseDense(nnx.Module):
  """``y = bsmm(x, W, bias=b)`` (``x @ W + b``) with W on a fixed (or
  adaptively rewired) topology.

  Args:
    topology: the layer's ``Topology`` (n_in, n_out, block size, blocks).
    init: initialiser name (``snn_jax.nn.INITIALIZERS``).
    use_bias: add a trainable bias of shape [n_out].
    bias_init: the bias's starting value (0; Alford et al. 2019 start theirs
      at 0.1).
    impl: ``bsmm`` implementation (``"auto"``, ``"xla"``, ...).
    dtype: parameter and compute dtype (float32 or bfloat16).
    live_inputs: bool[n_in], inputs that carry signal (NeuroFabric init).
    rngs: ``nnx.Rngs`` with a ``params`` stream.

  Shapes: ``x[..., n_in] -> [..., n_out]``.
  """

  def __init__(self, topology: Topology, *, init: str = "sparse_he",
               use_bias: bool = True, bias_init: float = 0.0,
               impl: str = "auto", dtype=jnp.float32,
               live_inputs: np.ndarray | None = None, rngs: nnx.Rngs):
    if not isinstance(topology, Topology):
      raise TypeError(f"topology must be a Topology, got {type(topology).__name__}")
    self.n_in, self.n_out = topology.n_in, topology.n_out
    self.block_size = topology.block_size
    self.topology_name = topology.name
    self.impl = impl
    init_fn = get_initializer(init)
    self.values = nnx.Param(init_fn(rngs.params(), topology, dtype,
                                    live_inputs=live_inputs))
    meta = block_metadata(topology.rows, topology.cols, topology.n_row_blocks,
                          topology.n_col_blocks)
    for name in INDEX_FIELDS:
      setattr(self, name, TopologyVar(jnp.asarray(meta[name])))
    self.bias = (nnx.Param(jnp.full((self.n_out,), bias_init, dtype))
                 if use_bias else None)

  def weight(self) -> BlockCSR:
    """The layer's weight as a ``BlockCSR`` (no host validation: usable
    inside jit; the structure was validated when the layer was built)."""
    children = (self.values.get_value(),) + tuple(
        getattr(self, f).get_value() for f in INDEX_FIELDS)
    return BlockCSR.tree_unflatten(((self.n_in, self.n_out), self.block_size),
                                   children)

  def set_topology(self, topology: Topology, values: jax.Array) -> None:
    """Replaces the connections (host side) at fixed nnzb, so jitted
    functions of the model do not retrace (rewiring during training is
    ``sparse_training.SparseOptimizer``'s, on device)."""
    if topology.nnzb != self.values.get_value().shape[0]:
      raise ValueError(f"nnzb must stay {self.values.get_value().shape[0]}, got "
                       f"{topology.nnzb}")
    if values.shape != (topology.nnzb, self.block_size, self.block_size):
      raise ValueError(f"values of shape {values.shape} do not fit "
                       f"{topology.nnzb} blocks of size {self.block_size}")
    meta = block_metadata(topology.rows, topology.cols, topology.n_row_blocks,
                          topology.n_col_blocks)
    for name in INDEX_FIELDS:
      getattr(self, name).set_value(jnp.asarray(meta[name]))
    self.values.set_value(values)
    self.topology_name = topology.name

  def topology(self) -> Topology:
    """The current connections as a host-side ``Topology``."""
    return Topology(self.n_in, self.n_out, np.asarray(self.row_idx.get_value()),
                    np.asarray(self.col_idx.get_value()), block_size=self.block_size,
                    name=self.topology_name, assume_sorted=True)

  @property
  def nnz(self) -> int:
    return int(self.values.get_value().size)

  def dense_kernel(self) -> jax.Array:
    """The weight as a dense ``[n_in, n_out]`` array, traceable -- for layers
    used as a dense kernel (a convolution's); growth taps see it
    (:mod:`snn_jax.nn._taps`), so RigL can grow such a layer too."""
    return _taps.tap_dense(self, self.weight().to_dense())

  def dense_weight(self) -> np.ndarray:
    """float32[n_in, n_out] on the host, zeros off the topology."""
    return np.asarray(jax.device_get(self.weight().to_dense()), np.float32)

  def assign_dense(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
    """Sets the stored blocks from a dense ``[n_in, n_out]`` matrix (entries
    off the topology are ignored) and the bias from ``[n_out]``: how a
    pruned topology is rewound to its initial weights (lottery tickets)."""
    w = np.asarray(weight)
    if w.shape != (self.n_in, self.n_out):
      raise ValueError(f"weight has shape {w.shape}, layer is "
                       f"({self.n_in}, {self.n_out})")
    bs = self.block_size
    rows = np.asarray(self.row_idx.get_value())
    cols = np.asarray(self.col_idx.get_value())
    blocks = w.reshape(self.n_in // bs, bs, self.n_out // bs, bs).transpose(
        0, 2, 1, 3)[rows, cols]
    dtype = self.values.get_value().dtype
    self.values.set_value(jnp.asarray(blocks, dtype))
    if bias is not None:
      if self.bias is None:
        raise ValueError("the layer has no bias to assign")
      b = np.asarray(bias)
      if b.shape != (self.n_out,):
        raise ValueError(f"bias has shape {b.shape}, expected ({self.n_out},)")
      self.bias.set_value(jnp.asarray(b, dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.values.get_value().dtype
    bias = None if self.bias is None else self.bias.get_value().astype(dtype)
    y = bsmm(x.astype(dtype), self.weight(), bias=bias, impl=self.impl)
    return _taps.tap_output(self, x, y)

  def conv_impl(self, impl: str = "auto") -> str:
    """The implementation :meth:`conv2d` runs for ``impl``
    (``snn_jax.conv.resolve_conv_impl`` at this layer's density and dtype
    on the target device)."""
    density = self.nnz / (self.n_in * self.n_out)
    return resolve_conv_impl(impl, density, self.values.get_value().dtype,
                             target_device().platform)

  def conv2d(self, x: jax.Array, kernel_size: tuple[int, int], *,
             padding: str = "SAME", impl: str = "auto",
             layout: str = "NHWC") -> jax.Array:
    """This layer's weight used as a convolution kernel (``n_in = C * kh *
    kw`` patch rows, channel-major; ``snn_jax.conv.sparse_conv2d``), plus
    the bias. While growth taps record (RigL), the kernel is used densely
    and tapped, so its dense gradient is seen (:mod:`snn_jax.nn._taps`).

    Shapes: ``x[B, H, W, C] -> [B, Ho, Wo, n_out]`` (``layout="NHWC"``) or
    ``x[C, H, W, B] -> [n_out, Ho, Wo, B]`` (``"CHWB"``).
    """
    dtype = self.values.get_value().dtype
    bias = None if self.bias is None else self.bias.get_value().astype(dtype)
    x = x.astype(dtype)
    if _taps.recording_active():
      kernel = self.dense_kernel().astype(dtype)
      return add_channel_bias(
          conv2d_dense(x, kernel, kernel_size, padding, layout), bias, layout)
    return sparse_conv2d(x, self.weight(), kernel_size=kernel_size,
                         padding=padding, bias=bias, impl=impl, layout=layout)

  def __repr__(self) -> str:
    dense = self.n_in * self.n_out
    return (f"SparseDense({self.n_in}->{self.n_out}, {self.topology_name}, "
            f"block_size={self.block_size}, density={self.nnz / dense:.4g}, "
            f"nnz={self.nnz:,} of {dense:,} dense, impl={self.impl!r})")

  __str__ = __repr__  # NNX's Representable would print the full state.


class SparseLayerStack:
  """What every model whose weights are the ``SparseDense`` layers in
  ``self.layers`` offers (SparseMLP, LeNet5, AlfordLeNet5)."""

  def dense_weights(self) -> dict[str, np.ndarray]:
    """``layer_<l>_weight`` float32[n_in, n_out] (zeros off the topology) and
    ``layer_<l>_bias`` for every layer of ``self.layers``: the format of
    :func:`save_dense_weights` / :func:`load_dense_weights`."""
    return dense_weights_of(self.layers)

  @property
  def nnz(self) -> int:
    """Nonzero weights (biases and norm parameters excluded)."""
    return sum(layer.nnz for layer in self.layers)

  @property
  def dense_equivalent(self) -> int:
    return sum(layer.n_in * layer.n_out for layer in self.layers)


class SparseMLP(SparseLayerStack, nnx.Module):
  """A stack of ``SparseDense`` layers with activation, optional
  normalisation and dropout between them (none after the last layer).

  Args:
    topologies: one ``Topology`` per layer; widths must chain.
    activation: name in ``relu, gelu, tanh, sigmoid, swish, linear``, or
      ``srelu`` (:class:`~snn_jax.nn.SReLU`, learned, one per hidden layer).
    norm: ``None``, ``"layer"`` (LayerNorm) or ``"batch"`` (BatchNorm).
    dropout: dropout rate after each hidden activation.
    output_activation: activation applied to the logits too (None: none;
      Alford et al. 2019's code applies ReLU to them).
    init, bias_init, impl, dtype: passed to every layer. With
      ``init="neurofabric"`` the live inputs of each layer are computed over
      the whole stack.
    rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` if used) streams.
  """

  def __init__(self, topologies: Sequence[Topology], *, activation: str = "relu",
               norm: str | None = None, dropout: float = 0.0,
               init: str = "sparse_he", bias_init: float = 0.0,
               output_activation: str | None = None, impl: str = "auto",
               dtype=jnp.float32, rngs: nnx.Rngs):
    topologies = list(topologies)
    if not topologies:
      raise ValueError("SparseMLP needs at least one topology")
    for a, b in zip(topologies[:-1], topologies[1:]):
      if a.n_out != b.n_in:
        raise ValueError(f"widths do not chain: {a.n_out} -> {b.n_in}")
    if norm not in (None, "layer", "batch"):
      raise ValueError(f"norm must be None, 'layer' or 'batch', got {norm!r}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.activation_name = activation
    hidden = [t.n_out for t in topologies[:-1]]
    if activation in LEARNED_ACTIVATIONS:
      self.activation = None
      self.learned_activations = nnx.List([
          LEARNED_ACTIVATIONS[activation](h, dtype=dtype, rngs=rngs)
          for h in hidden])
    else:
      self.activation = get_activation(activation)
      self.learned_activations = None
    self.output_activation_name = output_activation
    self.output_activation = (None if output_activation is None
                              else get_activation(output_activation))
    live = live_units(topologies) if init == "neurofabric" else [None] * (
        len(topologies) + 1)
    self.layers = nnx.List([
        SparseDense(t, init=init, bias_init=bias_init, impl=impl, dtype=dtype,
                    live_inputs=live[l], rngs=rngs) for l, t in enumerate(topologies)])
    if norm == "layer":
      self.norms = nnx.List([nnx.LayerNorm(h, rngs=rngs) for h in hidden])
    elif norm == "batch":
      self.norms = nnx.List([nnx.BatchNorm(h, rngs=rngs) for h in hidden])
    else:
      self.norms = None
    self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x[..., n_in] -> logits[..., n_out]``."""
    return self._forward(x)[0]

  def _forward(self, x):
    """Logits and every layer's pre-activation."""
    x = x.reshape(*x.shape[:-1], -1) if x.ndim > 1 else x
    pre = []
    for l, layer in enumerate(self.layers):
      x = layer(x)
      pre.append(x)
      if l < len(self.layers) - 1:
        if self.norms is not None:
          x = self.norms[l](x)
        x = (self.activation(x) if self.learned_activations is None
             else self.learned_activations[l](x))
        if self.dropout is not None:
          x = self.dropout(x)
      elif self.output_activation is not None:
        x = self.output_activation(x)
    return x, pre

  def preactivation_second_moments(self, x: jax.Array) -> np.ndarray:
    """float64[num_layers]: ``mean(z_l ** 2)`` of every layer's pre-
    activation ``z_l`` (before normalisation and activation) over the batch
    ``x[batch, n_in]`` and the layer's units -- the quantity a variance-
    preserving initialisation keeps of order one with depth (He et al. 2015;
    Isakov & Kinsy 2020). Runs the layers eagerly, one at a time; call it on
    a model in eval mode if it has dropout."""
    _, pre = self._forward(jnp.asarray(x))
    return np.array([float(jnp.mean(jnp.square(z.astype(jnp.float32))))
                     for z in pre])

  def topologies(self) -> list[Topology]:
    return [layer.topology() for layer in self.layers]

  def __repr__(self) -> str:
    lines = [f"SparseMLP({self.activation_name}, nnz={self.nnz:,} of "
             f"{self.dense_equivalent:,} dense = "
             f"{self.nnz / self.dense_equivalent:.2%})"]
    lines += [f"  {layer!r}" for layer in self.layers]
    return "\n".join(lines)

  __str__ = __repr__


def dense_weights_of(layers: Sequence[SparseDense]) -> dict[str, np.ndarray]:
  """``layer_<l>_weight`` (dense float32[n_in, n_out], zeros off the
  topology) and ``layer_<l>_bias`` of each layer, in order."""
  out = {}
  for l, layer in enumerate(layers):
    out[f"layer_{l}_weight"] = layer.dense_weight()
    if layer.bias is not None:
      out[f"layer_{l}_bias"] = np.asarray(layer.bias.get_value(), np.float32)
  return out


def save_dense_weights(model: SparseMLP, path: str) -> None:
  """Writes ``model.dense_weights()`` to an ``.npz`` file."""
  np.savez_compressed(path, **model.dense_weights())


def load_dense_weights(model: SparseMLP, path: str) -> None:
  """Assigns every layer's blocks (and bias) from an ``.npz`` written by
  :func:`save_dense_weights` for a network of the same widths; weights off
  a layer's topology are ignored."""
  with np.load(path) as f:
    for l, layer in enumerate(model.layers):
      key = f"layer_{l}_weight"
      if key not in f:
        raise ValueError(f"{path!r} has no {key} (written for another network?)")
      bias = f[f"layer_{l}_bias"] if f"layer_{l}_bias" in f else None
      layer.assign_dense(f[key], bias if layer.bias is not None else None)
