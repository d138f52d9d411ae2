"""RadiX-Net and butterfly topologies (mixed-radix constructions).

RadiX-Net: Robinett & Kepner, "Neural Network Topologies for Sparse
Training", arXiv:1809.05242 (also arXiv:1905.00416); used by Alford et al.,
arXiv:1810.00299, and by the Sparse DNN Graph Challenge.

A mixed-radix system ``N = (N_1, ..., N_L)`` with ``N' = prod N_i`` defines L
sparse layers on ``N'`` nodes: layer k joins node j to nodes
``(j + m * P_k) mod N'`` for ``m = 0..N_k - 1`` where ``P_k = N_1 ... N_{k-1}``
is the place value. Several systems may be chained: every system but the
last has the product ``N'``; the last one's product need only divide
``N'`` (as the authors' generator allows, e.g. ``[[4, 4], [2]]``). Dense widths ``D_0..D_L`` turn each node of layer l into ``D_l`` neurons:
the layer is ``kron(W_k, ones(D_l, D_{l+1}))``, so layer widths are
``N' D_l``. Proven properties (checked in tests):
  * density of layer k is exactly ``N_k / N'``;
  * across one full system every input node reaches every output node by
    exactly one path (with dense widths: the same number of paths,
    ``prod of the inner D``), so all input-output path counts are equal.

Inputs that are not a multiple of ``N'``: with ``truncate_inputs=True`` the
first layer is built on ``N' * D_0`` rows, ``D_0 = ceil(n_in / N')``, and
its first rows are dropped -- as Alford et al. fit 784 MNIST pixels to a
RadiX-Net of 800 inputs (N = [[10, 10]], D = [8, 3, 1]). The dropped rows'
connections are lost, so the fan-in of the first layer's units spreads;
the layer's ``params`` record ``dropped_input_rows`` and the fan-in range.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from snn_jax.topology._common import fold, nearest_divisor
from snn_jax.topology._registry import register
from snn_jax.topology._topology import Topology


def radix_layer(n_prime: int, radix: int, place: int, d_in: int, d_out: int):
  """Block coordinates of ``kron(W, ones(d_in, d_out))`` where ``W`` joins
  node j to ``(j + m * place) mod n_prime`` for m < radix."""
  j = np.arange(n_prime, dtype=np.int64)
  m = np.arange(radix, dtype=np.int64)
  nbr = (j[:, None] + m[None, :] * place) % n_prime  # [N', radix]
  src = np.repeat(j, radix)
  dst = nbr.ravel()
  rows = (src[:, None, None] * d_in + np.arange(d_in)[None, :, None])
  cols = (dst[:, None, None] * d_out + np.arange(d_out)[None, None, :])
  rows, cols = np.broadcast_arrays(rows, cols)
  return rows.ravel(), cols.ravel()


def n_digits(n_prime: int, radix: int) -> int:
  """The number of place values ``1, radix, radix^2, ...`` below ``n_prime``
  (at least 1): the largest d with ``radix**d <= n_prime``, in exact integer
  arithmetic (``log(1000) / log(10)`` is 2.9999999999999996 in floats)."""
  if radix < 2:
    return 1
  d, p = 0, 1
  while p * radix <= n_prime:
    p *= radix
    d += 1
  return max(d, 1)


def _radixnet_stack(widths: Sequence[int], *, densities, fan_ins, block_sizes,
                    seed, radices=None, n_prime=None, radix=None, place=None,
                    truncate_inputs=False):
  if radices is None:
    if truncate_inputs:
      raise ValueError("radixnet: truncate_inputs needs radices=")
    return None  # Layer-by-layer construction from density.
  if any(d is not None for d in densities) or any(f is not None for f in fan_ins):
    raise ValueError("radixnet with radices= fixes the density; omit density/fan_in")
  systems = [list(r) for r in radices] if isinstance(radices[0], (list, tuple)) \
      else [list(radices)]
  if any(int(r) != r or r < 1 for s in systems for r in s) or not all(systems):
    raise ValueError(f"radixnet: radices must be non-empty lists of positive "
                     f"ints, got {radices}")
  products = [int(np.prod(s)) for s in systems]
  npr = products[0]
  if len(set(products[:-1])) > 1 or npr % products[-1] or (
      len(products) > 1 and products[-2] != npr):
    raise ValueError(
        f"radixnet: every radix system but the last must have the same "
        f"product N', and the last one's product must divide N'; got products "
        f"{products}")
  digits = [(r, int(np.prod(s[:k]))) for s in systems for k, r in enumerate(s)]
  if len(digits) != len(widths) - 1:
    raise ValueError(
        f"radixnet: radices {radices} define {len(digits)} layers but widths "
        f"{list(widths)} have {len(widths) - 1}"
    )
  if len(set(block_sizes)) != 1:
    raise ValueError("radixnet stacks need one block size for all layers")
  bs = block_sizes[0]
  units = []
  for i, w in enumerate(widths):
    if w % bs or ((w // bs) % npr and not (i == 0 and truncate_inputs)):
      raise ValueError(
          f"radixnet: width {w} is not a multiple of N' * block_size = "
          f"{npr} * {bs}; widths must be N' times the dense widths D"
          + ("" if i else " (or pass truncate_inputs=True to build the first "
             "layer on the next multiple and drop its first rows)"))
    units.append(w // bs)
  dropped = -units[0] % npr  # rows (in blocks) to drop from the first layer
  units[0] += dropped
  out = []
  for l, (r, p) in enumerate(digits):
    rows, cols = radix_layer(npr, r, p, units[l] // npr, units[l + 1] // npr)
    params = {"radix": r, "place": p, "n_prime": npr, "layer": l}
    if l == 0 and dropped:
      keep = rows >= dropped
      rows, cols = rows[keep] - dropped, cols[keep]
      fan_in = np.bincount(cols, minlength=units[1]) * bs
      params.update(dropped_input_rows=dropped * bs,
                    fan_in_min=int(fan_in.min()), fan_in_max=int(fan_in.max()))
    out.append(Topology(widths[l], widths[l + 1], rows, cols,
                        block_size=bs, name="radixnet", params=params))
  return out


@register("radixnet", stack_fn=_radixnet_stack)
def radixnet(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
             radices=None, n_prime: int | None = None, radix: int | None = None,
             place: int | None = None, truncate_inputs: bool = False):
  """RadiX-Net layer (see module docstring).

  In :func:`make_stack` give ``radices`` (one list, or a list of lists with a
  common product ``N'``) -- layer widths must be ``N' * D_l``. For a single
  layer (or a stack built from ``density``) give ``n_prime`` (default
  ``gcd(n_in, n_out)``), ``radix`` (default ``round(density * N')``) and
  ``place`` (default ``radix ** (layer mod n_digits)``, so a stack of equal
  radices walks through the digits of a full system). Density is exactly
  ``radix / N'``; a ``density`` is rounded to the nearest achievable
  ``radix / N'`` (at least ``1 / N'``) -- the Topology reports what was built.
  Where ``N'`` is a power of the radix, a stack of ``n_digits(N', radix)``
  such layers joins every input to every output; otherwise the place values
  stop below ``N'`` and reachability is partial (check it with
  ``snn_jax.analysis.path_stats``), so prefer ``radices=`` there.
  """
  if radices is not None or truncate_inputs:
    raise ValueError("radices= and truncate_inputs build a whole stack: use "
                     "make_stack(...)")
  npr = int(n_prime) if n_prime is not None else int(np.gcd(n_rows, n_cols))
  if n_rows % npr or n_cols % npr:
    raise ValueError(
        f"radixnet: N'={npr} must divide both sides ({n_rows}, {n_cols})"
    )
  if radix is None:
    if fan_in is not None:
      radix = fan_in * npr // n_rows
      if radix * n_rows != fan_in * npr:
        raise ValueError(f"radixnet: fan_in={fan_in} is not radix*n_in/N'")
    elif density is not None:
      radix = int(min(max(round(density * npr), 1), npr))
    else:
      raise ValueError("radixnet needs radix=, density= or fan_in=")
  if not 1 <= radix <= npr:
    raise ValueError(
        f"radixnet: radix {radix} must be in [1, N'={npr}] (density "
        f"{density} on N'={npr} nodes); raise the density or N'"
    )
  if place is None:
    # Cycle place values 1, r, r^2, ... while they stay below N'.
    place = radix ** (layer % n_digits(npr, radix)) if radix > 1 else 1
  return radix_layer(npr, radix, int(place), n_rows // npr, n_cols // npr)


def _butterfly_radices(m: int, radix: int) -> list[int]:
  if m % radix:
    raise ValueError(f"butterfly radix {radix} must divide the size {m}")
  out = []
  rest = m
  while rest > 1:
    r = radix if rest % radix == 0 else rest
    out.append(r)
    rest //= r
  return out


@register("butterfly")
def butterfly(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
              radix: int | None = None):
  """Butterfly (FFT-network) stage: on m = max(n_in, n_out) units written in
  mixed radix (radix, radix, ..., remainder), stage k joins units that differ
  only in digit k (no carry, unlike RadiX-Net's modular addition). Stage
  ``k = layer mod n_digits``; a stack of n_digits stages connects every input
  to every output by exactly one path (square layers). NeuroFabric
  (Isakov & Kinsy, arXiv:2002.08339) studies butterflies among its
  topologies. Rectangular layers fold the smaller side.

  ``radix`` defaults to the divisor of m nearest to ``density * min(n_in,
  n_out)``; a stage's density is ``digit radix / min(n_in, n_out)``.
  """
  m = max(n_rows, n_cols)
  if radix is None:
    if density is None and fan_in is None:
      raise ValueError("butterfly needs radix= or density=")
    # Folding the smaller side s makes the layer's density radix / s.
    target = (density if density is not None else fan_in / n_rows)
    radix = nearest_divisor(m, target * min(n_rows, n_cols))
  if radix < 2:
    raise ValueError(f"butterfly radix must be >= 2, got {radix}")
  radices = _butterfly_radices(m, radix)
  k = layer % len(radices)
  r = radices[k]
  place = int(np.prod(radices[:k]))
  u = np.arange(m, dtype=np.int64)
  digit = (u // place) % r
  base = u - digit * place
  rows = np.repeat(u, r)
  cols = (base[:, None] + np.arange(r)[None, :] * place).ravel()
  return fold(rows, cols, n_rows, n_cols)
