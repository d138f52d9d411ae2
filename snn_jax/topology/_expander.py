"""Deterministic structured expanders: circulant / Cayley graphs of Z_m and
the point-line incidence graph of a projective plane (a bipartite Ramanujan
graph). Bourely, Boueri & Choromanski, "Sparse Neural Networks Topologies",
arXiv:1706.05683, compare such structured bipartite graphs with random ones.

Rectangular layers: the graph is built on Z_m with ``m = max(n_in, n_out)``
and the smaller side is folded (index mod its size). When the smaller side
divides the larger and the shifts are distinct modulo it, folding merges no
edges, so the layer stays biregular with fan-out ``d * m / n_in`` and fan-in
``d * m / n_out`` where d is the number of shifts.
"""

from __future__ import annotations

import numpy as np

from snn_jax.topology._common import degree_from_request, fold
from snn_jax.topology._registry import register

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def _circulant_edges(m: int, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Edges (r, (r + s) mod m) of the bipartite double cover of Cay(Z_m, S)."""
  r = np.repeat(np.arange(m, dtype=np.int64), shifts.size)
  c = (r + np.tile(shifts.astype(np.int64), m)) % m
  return r, c


def _distinct_mod(candidates: np.ndarray, modulus: int, d: int) -> np.ndarray:
  """The first d candidates with distinct residues mod ``modulus``."""
  _, first = np.unique(candidates % modulus, return_index=True)
  picked = candidates[np.sort(first)]
  if picked.size < d:
    raise ValueError(f"only {picked.size} distinct shifts available, need {d}")
  return picked[:d]


def _shift_count(n_rows, n_cols, density, fan_in, label):
  small = min(n_rows, n_cols)
  if fan_in is not None:
    # fan-in d * m / n_out  ->  d = fan_in * n_out / m
    m = max(n_rows, n_cols)
    if (fan_in * n_cols) % m:
      raise ValueError(f"{label}: fan_in={fan_in} is not reachable; fan-in is "
                       f"a multiple of {m // np.gcd(m, n_cols)}")
    return degree_from_request(small, None, fan_in * n_cols // m, label=label)
  return degree_from_request(small, density, None, label=label)


@register("circulant")
def circulant(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
              stride: int = 1, shifts: tuple[int, ...] | None = None):
  """Shift (circulant) graph: unit r connects to r + s (mod m) for s in
  ``shifts`` (default: ``0, stride, 2*stride, ...``, d of them, with
  ``d = round(density * min(n_in, n_out))``).

  With consecutive shifts this is a banded, local ring lattice -- a poor
  expander kept as the structured baseline.
  """
  m = max(n_rows, n_cols)
  if shifts is not None:
    s = np.asarray(shifts, dtype=np.int64) % m
    if np.unique(s).size != s.size:
      raise ValueError(f"circulant shifts must be distinct mod {m}: {shifts}")
  else:
    d = _shift_count(n_rows, n_cols, density, fan_in, "circulant")
    if stride < 1:
      raise ValueError(f"stride must be >= 1, got {stride}")
    s = _distinct_mod(np.arange(0, m * stride, stride, dtype=np.int64) % m,
                      min(n_rows, n_cols), d)
  return fold(*_circulant_edges(m, s), n_rows, n_cols)


@register("cayley")
def cayley(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
           generators: str = "weyl"):
  """Bipartite Cayley graph of the cyclic group Z_m (structured expander).

  The generator set S has d elements (``d = round(density * min side)``):
    * ``"weyl"``: ``floor(k * phi * m)`` with phi the golden ratio -- a
      deterministic, low-discrepancy set, spread over Z_m;
    * ``"quadratic"``: ``k^2 mod m`` (Paley-flavoured);
    * ``"random"``: a random d-subset for the seed (Alon–Roichman: random
      Cayley graphs with d = O(log m) generators are expanders w.h.p.).
  Abelian Cayley graphs need degree growing like log m to expand well, so at
  very low degree they trail random graphs -- one of the contrasts Bourely et
  al. study.
  """
  m = max(n_rows, n_cols)
  small = min(n_rows, n_cols)
  d = _shift_count(n_rows, n_cols, density, fan_in, "cayley")
  k = np.arange(4 * m, dtype=np.int64)
  if generators == "weyl":
    cand = np.floor(np.mod(k * _GOLDEN, 1.0) * m).astype(np.int64)
  elif generators == "quadratic":
    cand = (k * k) % m
  elif generators == "random":
    cand = rng.permutation(m).astype(np.int64)
  else:
    raise ValueError(
        f"cayley generators must be 'weyl', 'quadratic' or 'random', got "
        f"{generators!r}"
    )
  cand = np.concatenate([cand, np.arange(m, dtype=np.int64)])  # completes S
  s = _distinct_mod(cand, small, d)
  return fold(*_circulant_edges(m, s), n_rows, n_cols)


# The incidence is built with dense N x N dot products (chunked), so q is
# capped: q = 127 gives N = 16,257 and takes a few seconds. Its density
# (q + 1) / N is then ~0.008, the lowest this construction reaches.
_MAX_Q = 127


def _is_prime(q: int) -> bool:
  return q >= 2 and all(q % p for p in range(2, int(q**0.5) + 1))


def projective_plane_incidence(q: int) -> tuple[np.ndarray, np.ndarray]:
  """Point-line incidence of PG(2, q), q prime: (q+1)-regular on
  ``N = q^2 + q + 1`` points and N lines. Its biadjacency has singular values
  q + 1 (once) and sqrt(q) (N - 1 times), so it is a bipartite Ramanujan
  graph (second eigenvalue sqrt(q) <= 2 sqrt(q)).

  Returns (point index, line index) arrays of the N (q + 1) incidences.
  """
  if not _is_prime(q):
    raise ValueError(f"projective plane order q must be prime, got {q}")
  a, b = np.meshgrid(np.arange(q), np.arange(q), indexing="ij")
  pts = np.concatenate([
      np.stack([np.ones(q * q, np.int64), a.ravel(), b.ravel()], 1),
      np.stack([np.zeros(q, np.int64), np.ones(q, np.int64), np.arange(q)], 1),
      np.array([[0, 0, 1]], np.int64),
  ])
  n = pts.shape[0]
  rows, cols = [], []
  chunk = max(1, (1 << 22) // n)
  for start in range(0, n, chunk):
    inc = (pts[start:start + chunk] @ pts.T) % q == 0
    r, c = np.nonzero(inc)
    rows.append(r + start)
    cols.append(c)
  return np.concatenate(rows), np.concatenate(cols)


@register("ramanujan")
def ramanujan(n_rows, n_cols, *, density, fan_in, rng, layer, num_layers,
              q: int | None = None, strict: bool = False):
  """Deterministic bipartite Ramanujan graph: incidence of points and lines
  of the projective plane PG(2, q) (q prime), ``N = q^2+q+1`` per side,
  lifted to ``(a N, b N)`` units by a Kronecker product with all-ones
  ``a x b`` blocks. Density ``(q + 1) / N``.

  ``q`` (prime, at most 127) defaults to the prime whose density is closest to the requested one.
  When N does not divide both widths the lift uses ``a = ceil(n_in / N)``,
  ``b = ceil(n_out / N)`` and drops the overhanging units: the graph is then
  only near-regular and no longer exactly Ramanujan; ``strict=True`` raises
  instead.
  """
  def fits(p):
    n = p * p + p + 1
    return n_rows % n == 0 and n_cols % n == 0
  small = min(n_rows, n_cols)
  primes = [p for p in range(2, min(int(np.sqrt(small)), _MAX_Q) + 1)
            if _is_prime(p) and p * p + p + 1 <= small]
  if strict:
    primes = [p for p in primes if fits(p)]
  if q is None:
    if not primes:
      raise ValueError(
          f"ramanujan: no prime q has q^2+q+1 "
          f"{'dividing' if strict else 'at most'} the layer widths "
          f"({n_rows}, {n_cols}); use multiples of 7, 13, 31, 57, 133, 183, "
          "307, ... (q = 2, 3, 5, 7, 11, 13, 17)"
      )
    target = density if density is not None else (
        fan_in / n_rows if fan_in is not None else None)
    if target is None:
      q = primes[-1]
    else:
      q = min(primes, key=lambda p: abs(np.log((p + 1) / (p * p + p + 1)) -
                                         np.log(target)))
  elif (not _is_prime(q) or q > _MAX_Q or q * q + q + 1 > small
        or (strict and not fits(q))):
    raise ValueError(
        f"ramanujan: q={q} needs to be a prime <= {_MAX_Q} with N = q^2+q+1 = {q * q + q + 1}"
        f" {'dividing' if strict else 'at most'} both sides ({n_rows}, {n_cols})"
    )
  n = q * q + q + 1
  if target_density := (density if density is not None else
                        (fan_in / n_rows if fan_in is not None else None)):
    achieved = (q + 1) / n
    if not 0.5 <= achieved / target_density <= 2.0:
      raise ValueError(
          f"ramanujan: density {target_density:.3g} is out of reach for "
          f"({n_rows}, {n_cols}); the nearest construction (q={q}) has "
          f"density {achieved:.3g} (reachable: about 1/q for primes q <= "
          f"{_MAX_Q} with q^2+q+1 <= the smaller width)"
      )
  pr, pc = projective_plane_incidence(q)
  a, b = -(-n_rows // n), -(-n_cols // n)
  rows = pr[:, None, None] * a + np.arange(a)[None, :, None]
  cols = pc[:, None, None] * b + np.arange(b)[None, None, :]
  rows, cols = np.broadcast_arrays(rows, cols)
  rows, cols = rows.ravel(), cols.ravel()
  keep = (rows < n_rows) & (cols < n_cols)
  return rows[keep], cols[keep]
