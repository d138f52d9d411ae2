"""Activations with parameters of their own, as NNX modules.

:class:`SReLU` is the activation of SET's Keras experiments (Mocanu et al.
2018, ``SET-MLP-Keras-Weights-Mask/set_mlp_keras_cifar10.py`` in
dcmocanu/sparse-evolutionary-artificial-neural-networks, which takes it from
keras-contrib): the S-shaped rectified linear unit of Jin et al., "Deep
learning with S-shaped rectified linear activation units", AAAI 2016
(arXiv:1512.07030).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class SReLU(nnx.Module):
  """S-shaped ReLU with learned thresholds and slopes, one set per unit.

  With ``t_r = t_left + |t_right|`` (so the right threshold never passes the
  left one)::

    f(x) = t_left + a_left * (x - t_left)   for x <= t_left
    f(x) = x                                for t_left < x < t_r
    f(x) = t_r + a_right * (x - t_r)        for x >= t_r

  Initialised as keras-contrib's ``SReLU`` defaults: ``t_left = 0``,
  ``a_left ~ U[0, 1)``, ``t_right ~ U[0, 5)``, ``a_right = 1``.

  Args:
    features: units (the last axis of the input).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, features: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    if not (isinstance(features, int) and features >= 1):
      raise ValueError(f"SReLU needs a positive number of features, got "
                       f"{features!r}")
    self.features = features
    self.t_left = nnx.Param(jnp.zeros((features,), dtype))
    self.a_left = nnx.Param(jax.random.uniform(rngs.params(), (features,),
                                               dtype, 0.0, 1.0))
    self.t_right = nnx.Param(jax.random.uniform(rngs.params(), (features,),
                                                dtype, 0.0, 5.0))
    self.a_right = nnx.Param(jnp.ones((features,), dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x[..., features]`` -> the same shape."""
    shape = (1,) * (x.ndim - 1) + (self.features,)
    t_left, t_right, a_left, a_right = (
        v.get_value().reshape(shape) for v in
        (self.t_left, self.t_right, self.a_left, self.a_right))
    t_right = t_left + jnp.abs(t_right)
    centre = jnp.clip(x, t_left, t_right)
    return (centre + a_left * jnp.minimum(x - t_left, 0.0)
            + a_right * jnp.maximum(x - t_right, 0.0))

  def __repr__(self) -> str:
    return f"SReLU({self.features})"


# Activations with parameters: built once per hidden layer, by name.
LEARNED_ACTIVATIONS = {"srelu": SReLU}
