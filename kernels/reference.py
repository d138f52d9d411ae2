"""Dense references for the block-sparse products (tests and benchmarks only).

They densify the stored blocks and call ``jnp.dot`` at ``Precision.HIGHEST``
with float32 accumulation, so they are slow and memory-hungry by design.

Conventions shared by every kernel module: ``x`` is ``[batch, n_in]``, the
weight ``W`` is ``(n_in, n_out)`` given by ``values[nnzb, bs, bs]`` and the
block coordinates ``row_idx``/``col_idx`` (int32[nnzb]).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_HIGHEST = lax.Precision.HIGHEST


def densify(values: jax.Array, row_idx: jax.Array, col_idx: jax.Array, *,
            n_in: int, n_out: int) -> jax.Array:
  """float[n_in, n_out] with the blocks placed (duplicates would add)."""
  bs = values.shape[-1]
  w = jnp.zeros((n_in // bs, n_out // bs, bs, bs), values.dtype)
  w = w.at[row_idx, col_idx].add(values)
  return w.transpose(0, 2, 1, 3).reshape(n_in, n_out)


@functools.partial(jax.jit, static_argnames=("n_out",))
def bsmm_reference(x, values, row_idx, col_idx, *, n_out: int):
  """``y[B, n_out] = x @ W`` (f32 accumulation, output in x.dtype)."""
  w = densify(values, row_idx, col_idx, n_in=x.shape[-1], n_out=n_out)
  y = jnp.dot(x, w, precision=_HIGHEST, preferred_element_type=jnp.float32)
  return y.astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("n_in",))
def dx_reference(dy, values, row_idx, col_idx, *, n_in: int):
  """``dx[B, n_in] = dy @ W.T``."""
  w = densify(values, row_idx, col_idx, n_in=n_in, n_out=dy.shape[-1])
  dx = jnp.dot(dy, w.T, precision=_HIGHEST, preferred_element_type=jnp.float32)
  return dx.astype(dy.dtype)


@jax.jit
def sddmm_reference(x, dy, row_idx, col_idx, block_size_like):
  """``dW[k] = (x.T @ dy)`` restricted to block k: float[nnzb, bs, bs].

  ``block_size_like`` is any array whose last dimension is the block size
  (the values), which also fixes the output dtype.
  """
  bs = block_size_like.shape[-1]
  full = jnp.dot(x.T, dy, precision=_HIGHEST, preferred_element_type=jnp.float32)
  n_in, n_out = full.shape
  blocks = full.reshape(n_in // bs, bs, n_out // bs, bs).transpose(0, 2, 1, 3)
  return blocks[row_idx, col_idx].astype(block_size_like.dtype)
