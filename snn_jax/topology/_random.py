"""Dense and random bipartite topologies (NumPy only).

All sizes here are in graph units: neurons at ``block_size=1``, blocks
otherwise (``make`` converts).
"""

from __future__ import annotations

import numpy as np

from snn_jax.topology._common import (degree_from_request, sample_distinct,
                                      sample_distinct_per_group)
from snn_jax.topology._registry import register


@register("dense")
def dense(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers):
  """The fully connected baseline (density 1). ``density``/``fan_in`` must be
  omitted or describe a full layer."""
  if (density not in (None, 1, 1.0)) or (fan_in not in (None, n_rows)):
    raise ValueError(
        "topology 'dense' is fully connected; omit density/fan_in or pass "
        "density=1.0"
    )
  rows, cols = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
  return rows, cols


def set_epsilon_density(epsilon: float, n_rows: int, n_cols: int) -> float:
  """SET's density ``epsilon * (n_in + n_out) / (n_in * n_out)``.

  Mocanu et al., "Scalable training of artificial neural networks with
  adaptive sparse connectivity", Nature Communications 9, 2383 (2018).
  """
  return epsilon * (n_rows + n_cols) / (n_rows * n_cols)


@register("erdos_renyi")
def erdos_renyi(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
                epsilon: float | None = None, cap_density: bool = False):
  """Erdős–Rényi bipartite graph: every connection present independently.

  Args:
    density: connection probability p; or
    epsilon: SET's parametrisation, ``p = epsilon (n_in + n_out) /
      (n_in n_out)`` (Mocanu et al. 2018; used by Liu et al. 2020), counted
      in graph units.
    cap_density: with ``epsilon``, a layer where p > 1 becomes fully
      connected (what SET's reference code does for narrow layers such as
      1000 -> 10 at epsilon 20) instead of raising.

  The edge count is Binomial(n_in n_out, p) and the edges a uniform subset of
  that size, so the realised density is p up to sampling noise
  (std ``sqrt(p (1-p) / (n_in n_out))``).
  """
  if fan_in is not None:
    raise ValueError("erdos_renyi takes density= or epsilon=, not fan_in=")
  if epsilon is not None:
    if density is not None:
      raise ValueError("give density= or epsilon=, not both")
    if epsilon <= 0:
      raise ValueError(f"epsilon must be positive, got {epsilon}")
    density = set_epsilon_density(epsilon, n_rows, n_cols)
    if density > 1:
      if not cap_density:
        raise ValueError(
            f"epsilon={epsilon} gives density {density:.3g} > 1 for a "
            f"{n_rows}x{n_cols} layer; lower epsilon to at most "
            f"{n_rows * n_cols / (n_rows + n_cols):.3g}, or pass "
            "cap_density=True to make such layers dense as SET does"
        )
      density = 1.0
  if density is None:
    raise ValueError("erdos_renyi needs density= or epsilon=")
  population = n_rows * n_cols
  if density == 1.0:
    k = population
  else:
    k = int(rng.binomial(population, density))
  k = max(k, 1)
  flat = sample_distinct(population, k, rng)
  return np.divmod(flat, n_cols)


@register("fixed_fan_in")
def fixed_fan_in(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers):
  """Each output unit draws exactly ``d`` distinct inputs uniformly at random.

  ``d = fan_in`` or ``round(density * n_in)``; output degrees are exactly d,
  input degrees are Binomial-like.
  """
  d = degree_from_request(n_rows, density, fan_in, label="fixed_fan_in")
  picks = sample_distinct_per_group(n_cols, n_rows, d, rng)  # [n_cols, d]
  cols = np.repeat(np.arange(n_cols, dtype=np.int64), d)
  return picks.ravel(), cols


@register("xnet")
def xnet(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
         degree: int | None = None):
  """X-Net random expander (Prabhu, Varma & Namboodiri, "Deep Expander
  Networks", ECCV 2018): every unit of the *smaller* side connects to
  ``degree`` distinct random units of the larger side (their X-Linear layer).

  ``degree`` defaults to ``round(density * larger_side)`` or comes from
  ``fan_in`` when the output side is the smaller one.
  """
  if degree is None:
    if fan_in is not None and n_cols <= n_rows:
      degree = fan_in
    elif fan_in is not None:
      raise ValueError("xnet with more outputs than inputs takes degree= or "
                       "density=, not fan_in=")
    else:
      degree = degree_from_request(max(n_rows, n_cols), density, None,
                                   label="xnet")
  big = max(n_rows, n_cols)
  small = min(n_rows, n_cols)
  if not 1 <= degree <= big:
    raise ValueError(f"xnet degree must be in [1, {big}], got {degree}")
  picks = sample_distinct_per_group(small, big, degree, rng).ravel()
  owners = np.repeat(np.arange(small, dtype=np.int64), degree)
  if n_cols <= n_rows:
    return picks, owners
  return owners, picks


def _configuration_model(out_degrees, in_degrees, n_cols, rng):
  """Random bipartite graph with given degrees: random stub matching, then
  degree-preserving column swaps that remove multi-edges (vectorised).

  Args: out_degrees int[n_rows] (fan-out of each input), in_degrees
  int[n_cols] (fan-in of each output); the sums must match.
  """
  rows = np.repeat(np.arange(out_degrees.size, dtype=np.int64), out_degrees)
  cols = rng.permutation(np.repeat(np.arange(n_cols, dtype=np.int64), in_degrees))
  n_edges = rows.size
  for _ in range(1000):
    key = rows * n_cols + cols
    order = np.argsort(key, kind="stable")
    sk = key[order]
    dup = order[1:][sk[1:] == sk[:-1]]
    if dup.size == 0:
      return rows, cols
    # Swap the column of every duplicate edge with that of a random edge not
    # itself a duplicate; each swap keeps every degree.
    is_dup = np.zeros(n_edges, dtype=bool)
    is_dup[dup] = True
    partners = rng.integers(0, n_edges, size=dup.size * 2)
    partners = np.unique(partners[~is_dup[partners]])
    partners = rng.permutation(partners)[: dup.size]
    dup = dup[: partners.size]
    tmp = cols[dup].copy()
    cols[dup] = cols[partners]
    cols[partners] = tmp
  raise ValueError(
      "could not remove multi-edges from the configuration model; the "
      "requested degrees are too close to complete for this size"
  )


def balanced_degrees(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
  """int64[n] degrees summing to ``total`` that differ by at most one (the
  units that get the extra edge are chosen at random)."""
  base, extra = divmod(total, n)
  deg = np.full(n, base, dtype=np.int64)
  deg[rng.permutation(n)[:extra]] += 1
  return deg


@register("biregular")
def biregular(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
              strict: bool = False):
  """Random (near-)biregular bipartite graph, uniform over its degree
  sequence: every output has fan-in exactly ``d_in`` (``fan_in`` or
  ``round(density * n_in)``) and every input fan-out ``n_out d_in / n_in``.

  When that fan-out is not an integer, input fan-outs differ by at most one
  (``floor`` or ``ceil``); ``strict=True`` raises instead, naming the nearest
  fan-ins that make the graph exactly biregular. Built by the configuration
  model with degree-preserving swaps that remove multi-edges; above density
  1/2 the complement is built and inverted.
  """
  d_in = degree_from_request(n_rows, density, fan_in, label="biregular")
  if strict and (n_cols * d_in) % n_rows:
    step = n_rows // np.gcd(n_rows, n_cols)
    lo = (d_in // step) * step
    valid = [int(v) for v in (lo, lo + step) if 1 <= v <= n_rows]
    raise ValueError(
        f"biregular: fan-in {d_in} gives fan-out n_out*d_in/n_in = "
        f"{n_cols * d_in / n_rows:.3g}, not an integer; exactly biregular "
        f"fan-ins are multiples of {step} (nearest: {valid})"
    )
  if d_in == n_rows:
    return dense(n_rows, n_cols, density=None, fan_in=None, rng=rng,
                 layer=layer, num_layers=num_layers)
  complement = 2 * d_in > n_rows
  d = n_rows - d_in if complement else d_in
  in_deg = np.full(n_cols, d, dtype=np.int64)
  out_deg = balanced_degrees(n_cols * d, n_rows, rng)
  rows, cols = _configuration_model(out_deg, in_deg, n_cols, rng)
  if not complement:
    return rows, cols
  if n_rows * n_cols > (1 << 26):
    raise ValueError("biregular above density 1/2 is limited to 2**26 entries")
  mask = np.ones((n_rows, n_cols), dtype=bool)
  mask[rows, cols] = False
  return np.nonzero(mask)


def perturbed(topology, fraction: float, seed: int):
  """``topology`` with the fraction ``fraction`` of its connections (blocks
  at block size > 1) moved: ``round(fraction * nnzb)`` of them, drawn
  uniformly, are removed and as many are added at positions drawn uniformly
  among those that were empty -- same density, a slightly different graph.
  Liu et al. 2020 (arXiv:2006.14085, Figure 4) build their ten networks
  this way, each from the previous one with 1% of its connections changed.

  Returns a new ``Topology`` (same sizes, name and params, plus
  ``perturbed_fraction``)."""
  from snn_jax.topology._topology import Topology
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be in [0, 1], got {fraction}")
  t = topology
  grid = t.n_row_blocks * t.n_col_blocks
  k = int(round(fraction * t.nnzb))
  if k > grid - t.nnzb:
    raise ValueError(f"cannot move {k} connections: only {grid - t.nnzb} "
                     "positions are empty")
  rng = np.random.default_rng(seed)
  occupied = t.rows.astype(np.int64) * t.n_col_blocks + t.cols
  keep = np.ones(t.nnzb, bool)
  keep[rng.choice(t.nnzb, size=k, replace=False)] = False
  taken = set(occupied.tolist())
  new: list[int] = []
  while len(new) < k:  # rejection sampling: the graph is sparse
    for p in rng.integers(0, grid, size=2 * (k - len(new)) + 8).tolist():
      if p not in taken:
        taken.add(p)
        new.append(p)
        if len(new) == k:
          break
  flat = np.sort(np.concatenate([occupied[keep], np.asarray(new, np.int64)]))
  return Topology(t.n_in, t.n_out, flat // t.n_col_blocks, flat % t.n_col_blocks,
                  block_size=t.block_size, name=t.name,
                  params={**t.params, "perturbed_fraction": fraction})
