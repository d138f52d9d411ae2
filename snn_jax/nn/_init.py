"""Sparsity-aware initialisers for block-sparse layers.

A dense initialiser scales weights by the layer's *dense* fan-in ``n_in``; in
a sparse layer each output neuron j sums only ``fan_in_j << n_in`` inputs, so
its pre-activation variance shrinks by ``fan_in_j / n_in`` per layer and the
signal vanishes geometrically with depth (``"dense_he"`` below reproduces
that failure on purpose). The sparse initialisers scale by each neuron's
*actual* fan-in instead:

``"sparse_he"``      ``w_ij ~ N(0, 2 / fan_in_j)`` (He et al. 2015 for ReLU,
                     with the neuron's own fan-in).
``"sparse_glorot"``  ``w_ij ~ N(0, 2 / (fan_in_j + fan_out_i))`` (Glorot &
                     Bengio 2010 with per-connection degrees).
``"neurofabric"``    Isakov & Kinsy, NeuroFabric (arXiv:2002.08339), Sec. on
                     initialising very deep sparse networks: variance is
                     preserved per neuron, counting only inputs that actually
                     carry signal. In a deep sparse stack some units receive
                     no path from the network input (zero fan-in somewhere
                     upstream); they output a constant and contribute no
                     variance, so a neuron's *effective* fan-in is the number
                     of its inputs reachable from the input layer, and
                     ``w_ij ~ N(0, 2 / effective_fan_in_j)``. With no dead
                     units this equals ``sparse_he``; it differs -- and keeps
                     the variance where sparse_he lets it decay -- in deep,
                     very sparse random stacks (measured in the dead-unit
                     experiment of ``snn_jax.reproduce.isakov2020``). The
                     paper's text could not be read here: the derivation is
                     the variance-preservation argument its abstract
                     describes, not checked against its equations.
``"dense_he"``       ``N(0, 2 / n_in)``: the naive dense scaling.
``"dense_glorot_uniform"``  ``U(-l, l)``, ``l = sqrt(6 / (n_in + n_out))``:
                     Keras' default ``glorot_uniform`` on the dense kernel,
                     kept under the mask -- the initialisation of SET's
                     Keras-mask code (Mocanu et al. 2018), whose sparse
                     layers therefore start with a small signal.
``"truncated_normal:<std>"``  a fixed ``N(0, std²)`` redrawn beyond two
                     standard deviations (TensorFlow 1's
                     ``tf.truncated_normal``), whatever the fan-in: the
                     initialisation of Alford et al. 2019's LeNet-300-100
                     (``truncated_normal:0.04``) and LeNet-5 (``:0.05``).
``"normal:<std>"``   a fixed ``N(0, std²)``: SET's truly-sparse code
                     (``createSparseWeights``: ``randn() / 10``, i.e.
                     ``normal:0.1``).

Each initialiser is a function ``(key, topology, dtype, live_inputs=None) ->
float[nnzb, bs, bs]`` in the topology's storage order.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.topology import Topology

InitFn = Callable[..., jax.Array]

# Draws of up to this many entries are made at a power-of-two size and cut.
_BUCKETED_UP_TO = 1 << 22


@functools.lru_cache(maxsize=None)
def _flat_draw_fn(size: int, truncated: bool):
  if truncated:
    return jax.jit(lambda key: jax.random.truncated_normal(
        key, -2.0, 2.0, (size,), jnp.float32))
  return jax.jit(lambda key: jax.random.normal(key, (size,), jnp.float32))


def _standard_normal(key, shape: tuple[int, ...], truncated: bool = False):
  """float32 draws of ``shape``: ``jax.random.normal(key, shape)`` (or
  ``truncated_normal(key, -2, 2, shape)``), value for value.

  Every layer of a new topology has its own ``nnzb``, so drawing at the
  layer's shape compiles the random draw anew for every layer of every
  run. With JAX's partitionable threefry the first ``n`` draws of a longer
  flat draw are the draws of length ``n``, so a concrete key draws at the
  next power of two (one compilation per size class) and cuts; a traced
  key, a draw too large to pad, or the non-partitionable generator draws
  at the exact shape. Returns a NumPy array for a concrete key."""
  n = int(np.prod(shape, dtype=np.int64))
  if (isinstance(key, jax.core.Tracer) or n > _BUCKETED_UP_TO or n == 0
      or not jax.config.jax_threefry_partitionable):
    if truncated:
      return jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
    return jax.random.normal(key, shape, jnp.float32)
  size = max(256, 1 << (n - 1).bit_length())
  return np.asarray(_flat_draw_fn(size, truncated)(key))[:n].reshape(shape)


def _scaled(draw, std, dtype):
  """``draw * std`` in float32 (on the host for a host draw: IEEE products,
  the same bits as XLA's), cast to ``dtype``."""
  if isinstance(draw, np.ndarray):
    out = draw * np.asarray(std, np.float32)
    return jnp.asarray(out.astype(jnp.dtype(dtype)))
  return (draw * std).astype(dtype)


def _per_entry_std(topology: Topology, std_out: np.ndarray | None = None,
                   std_in_out: Callable | None = None) -> np.ndarray:
  """float32[nnzb, bs, bs] standard deviations from a per-output-neuron std
  (length n_out)."""
  bs = topology.block_size
  cols = topology.cols.astype(np.int64)
  # Output neurons of block k are cols[k]*bs + (0..bs-1), along the last axis.
  out_units = cols[:, None] * bs + np.arange(bs)[None, :]  # [nnzb, bs]
  std = std_out[out_units]  # [nnzb, bs]
  return np.broadcast_to(std[:, None, :], (topology.nnzb, bs, bs)).astype(np.float32)


def _safe(x: np.ndarray) -> np.ndarray:
  return np.maximum(x, 1).astype(np.float64)


def sparse_he(key, topology: Topology, dtype=jnp.float32, live_inputs=None):
  """``N(0, 2 / fan_in_j)`` with each output neuron's actual fan-in."""
  std_out = np.sqrt(2.0 / _safe(topology.fan_in()))
  std = _per_entry_std(topology, std_out)
  return _scaled(_standard_normal(key, std.shape), std, dtype)


def sparse_glorot(key, topology: Topology, dtype=jnp.float32, live_inputs=None):
  """``N(0, 2 / (fan_in_j + fan_out_i))`` with per-connection degrees."""
  bs = topology.block_size
  fi = topology.fan_in().astype(np.float64)
  fo = topology.fan_out().astype(np.float64)
  rows = topology.rows.astype(np.int64)[:, None] * bs + np.arange(bs)
  cols = topology.cols.astype(np.int64)[:, None] * bs + np.arange(bs)
  var = 2.0 / (fo[rows][:, :, None] + fi[cols][:, None, :])
  std = np.sqrt(var).astype(np.float32)
  return _scaled(_standard_normal(key, std.shape), std, dtype)


def dense_he(key, topology: Topology, dtype=jnp.float32, live_inputs=None):
  """The naive dense scaling ``N(0, 2 / n_in)`` (ignores sparsity)."""
  shape = (topology.nnzb, topology.block_size, topology.block_size)
  return _scaled(_standard_normal(key, shape),
                 np.float32(np.sqrt(2.0 / topology.n_in)), dtype)


def dense_glorot_uniform(key, topology: Topology, dtype=jnp.float32,
                         live_inputs=None):
  """``U(-l, l)``, ``l = sqrt(6 / (n_in + n_out))`` of the dense shape
  (Keras' ``glorot_uniform``; ignores sparsity)."""
  shape = (topology.nnzb, topology.block_size, topology.block_size)
  limit = float(np.sqrt(6.0 / (topology.n_in + topology.n_out)))
  return jax.random.uniform(key, shape, jnp.float32, -limit, limit
                            ).astype(dtype)


def effective_fan_in(topology: Topology, live_inputs: np.ndarray | None) -> np.ndarray:
  """int64[n_out]: inputs of each output neuron that carry signal
  (``live_inputs`` bool[n_in]; all live when None)."""
  if live_inputs is None:
    return topology.fan_in()
  b = topology.biadjacency()
  return np.asarray(b.T @ np.asarray(live_inputs, np.float64)).round().astype(np.int64)


def neurofabric(key, topology: Topology, dtype=jnp.float32, live_inputs=None):
  """``N(0, 2 / effective_fan_in_j)`` (see module docstring)."""
  std_out = np.sqrt(2.0 / _safe(effective_fan_in(topology, live_inputs)))
  std = _per_entry_std(topology, std_out)
  return _scaled(_standard_normal(key, std.shape), std, dtype)


INITIALIZERS: dict[str, InitFn] = {
    "sparse_he": sparse_he, "sparse_glorot": sparse_glorot,
    "neurofabric": neurofabric, "dense_he": dense_he,
    "dense_glorot_uniform": dense_glorot_uniform,
}


def truncated_normal(std: float, *, truncated: bool = True) -> InitFn:
  """The initialiser ``truncated_normal:<std>`` (``normal:<std>`` with
  ``truncated=False``; module docstring)."""
  if not (isinstance(std, (int, float)) and np.isfinite(std) and std > 0):
    raise ValueError(f"a fixed-std initialiser needs a positive std, got "
                     f"{std!r}")

  def init(key, topology: Topology, dtype=jnp.float32, live_inputs=None):
    shape = (topology.nnzb, topology.block_size, topology.block_size)
    return _scaled(_standard_normal(key, shape, truncated=truncated),
                   np.float32(std), dtype)
  return init


PARAMETRISED_INITIALIZERS = ("truncated_normal:<std>", "normal:<std>")


def get_initializer(name: str) -> InitFn:
  """The initialiser called ``name``: one of ``INITIALIZERS``,
  ``truncated_normal:<std>`` (e.g. ``"truncated_normal:0.04"``) or
  ``normal:<std>``."""
  prefix = name.partition(":")[0] if isinstance(name, str) else None
  if prefix in ("truncated_normal", "normal") and ":" in name:
    raw = name.partition(":")[2]
    try:
      std = float(raw)
    except ValueError:
      std = None
    if std is None or not np.isfinite(std) or std <= 0:
      raise ValueError(f"init {name!r}: the std after '{prefix}:' must "
                       f"be a positive number, e.g. '{prefix}:0.04'")
    return truncated_normal(std, truncated=prefix == "truncated_normal")
  try:
    return INITIALIZERS[name]
  except KeyError:
    raise ValueError(
        f"unknown init {name!r}; known: {', '.join(sorted(INITIALIZERS))} "
        f"and {', '.join(PARAMETRISED_INITIALIZERS)}") from None


def live_units(stack: Sequence[Topology]) -> list[np.ndarray]:
  """bool arrays, one per layer boundary (input first): which units receive
  at least one path from the network input."""
  live = [np.ones(stack[0].n_in, bool)]
  for t in stack:
    live.append(effective_fan_in(t, live[-1]) > 0)
  return live
