"""Gradient taps on sparse layers: each layer's input and output gradient on
a batch, for any model, without a dense ``[n_in, n_out]`` gradient.

RigL (Evci et al. 2020) grows connections where the loss gradient with
respect to the *dense* weight is largest. For a layer ``Y = X·W`` that
gradient is ``Xᵀ·dY``; what is needed is ``X`` (the layer's input) and
``dY`` (the loss gradient at its output), O(batch · width) each. While
:func:`recording` is active, every :class:`~snn_jax.nn.SparseDense` call
reports its input and adds a *tap* -- a zero array of its output's shape --
to its output; the gradient of the loss with respect to the taps is each
call's ``dY``. A layer whose weight is used as a dense kernel instead (a
convolution, :meth:`SparseDense.dense_kernel`) gets a tap on that kernel,
whose gradient is the dense gradient itself (small: convolution kernels).

Nothing is recorded outside :func:`recording`; the modules carry no extra
state, so any model built from ``SparseDense`` layers is tapped, with no
change to its code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp

_STATE = threading.local()


@dataclasses.dataclass
class TapCall:
  """One use of a layer while recording.

  Attributes:
    layer: the ``SparseDense`` used.
    kind: ``"io"`` (called on an input) or ``"dense"`` (its weight used as a
      dense kernel).
    inputs: ``"io"``: the call's input reshaped to ``[rows, n_in]``.
    shape, dtype: of the tapped array (the output, or the dense kernel).
  """
  layer: Any
  kind: str
  inputs: jax.Array | None
  shape: tuple[int, ...]
  dtype: Any


class _Recorder:

  def __init__(self, taps: Sequence[jax.Array] | None):
    self.taps = taps
    self.calls: list[TapCall] = []

  def _add(self, call: TapCall, value: jax.Array) -> jax.Array:
    i = len(self.calls)
    self.calls.append(call)
    if self.taps is None:
      return value
    if i >= len(self.taps) or self.taps[i].shape != value.shape:
      raise RuntimeError(
          "the loss used the sparse layers differently on two evaluations "
          "(a different number of calls or shapes); growth taps need a loss "
          "that is a deterministic function of the model")
    return value + self.taps[i].astype(value.dtype)


def _active() -> _Recorder | None:
  return getattr(_STATE, "recorder", None)


def recording_active() -> bool:
  """Whether sparse-layer uses are being recorded (inside :func:`recording`)."""
  return _active() is not None


def tap_output(layer, x: jax.Array, y: jax.Array) -> jax.Array:
  """Called by ``SparseDense.__call__``: records ``x`` and taps ``y``."""
  rec = _active()
  if rec is None:
    return y
  rows = None if rec.taps is None else x.reshape(-1, x.shape[-1]).astype(
      jnp.float32)
  return rec._add(TapCall(layer, "io", rows, y.shape, y.dtype), y)


def tap_dense(layer, kernel: jax.Array) -> jax.Array:
  """Called by ``SparseDense.dense_kernel``: taps the dense kernel."""
  rec = _active()
  if rec is None:
    return kernel
  return rec._add(TapCall(layer, "dense", None, kernel.shape, kernel.dtype),
                  kernel)


@contextlib.contextmanager
def recording(taps: Sequence[jax.Array] | None = None) -> Iterator[_Recorder]:
  """Records every sparse-layer use inside the block (``taps=None``: only
  their shapes; otherwise ``taps[i]`` is added to the i-th tapped array)."""
  if _active() is not None:
    raise RuntimeError("growth taps are already being recorded")
  rec = _Recorder(taps)
  _STATE.recorder = rec
  try:
    yield rec
  finally:
    _STATE.recorder = None


def layer_gradient_factors(loss: Callable[[], jax.Array], layers: Sequence[Any]
                           ) -> list[tuple[jax.Array, jax.Array]]:
  """For each of ``layers`` (``SparseDense``), ``(A[rows, n_in],
  D[rows, n_out])`` float32 with ``Aᵀ·D`` the gradient of ``loss()`` with
  respect to the layer's dense weight: its inputs and output gradients over
  all its calls, stacked (an identity and the dense gradient for a kernel
  tap). Traceable (use under ``jit``); raises ``ValueError`` naming a layer
  that ``loss`` does not use."""
  with recording() as probe:
    jax.eval_shape(loss)
  specs = [(c.shape, c.dtype) for c in probe.calls]

  def loss_of_taps(taps):
    with recording(taps) as rec:
      value = loss()
    return value.astype(jnp.float32), [c.inputs for c in rec.calls]

  zeros = [jnp.zeros(s, d) for s, d in specs]
  grads, inputs = jax.grad(loss_of_taps, has_aux=True)(zeros)
  by_layer: dict[int, list[tuple[jax.Array, jax.Array]]] = {}
  for call, x, g in zip(probe.calls, inputs, grads):
    g = g.astype(jnp.float32)
    if call.kind == "io":
      pair = (x, g.reshape(-1, g.shape[-1]))
    else:
      pair = (jnp.eye(g.shape[0], dtype=jnp.float32), g)
    by_layer.setdefault(id(call.layer), []).append(pair)
  out = []
  for i, layer in enumerate(layers):
    pairs = by_layer.get(id(layer))
    if not pairs:
      raise ValueError(
          f"sparse layer {i} ({layer!r}) is not used by the growth loss: "
          "RigL needs the loss of the whole model on a batch")
    out.append((jnp.concatenate([a for a, _ in pairs]),
                jnp.concatenate([d for _, d in pairs])))
  return out
