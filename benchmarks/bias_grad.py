"""The bias gradient inside ``bsmm`` (``bsmm(x, w, bias=b)``: summed by the
native kernel in the layout dX and dW read ``dy``) against the bias added
outside (``bsmm(x, w) + b``: XLA's own reduction), side by side in one run.

Per shape: one jitted gradient of ``sum(relu(layer(x)) * g)`` with respect to
the values and the bias -- the backward of a hidden layer as a training step
runs it -- and the same through a two-layer block so that ``dy`` is
feature-major where the kernels want it (block sizes that are not multiples
of 32). Random inputs; each figure is the best of 5 timed groups, the two
forms interleaved group by group; the gradients are checked equal within
float32 rounding before timing.

Usage (repo root; an idle machine): python benchmarks/bias_grad.py [out.json]
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from set_step_breakdown import _interleaved  # this script's directory
from snn_jax import topology as T
from snn_jax.ops import bsmm
from snn_jax.utils.env import device_info, versions

SHAPES = [  # (n, block size, density, batch)
    (1000, 1, 0.04, 128),   # SET-MLP's hidden layers
    (4096, 1, 0.01, 256),
    (4096, 32, 0.1, 256),
    (4096, 128, 0.1, 256),
]


def one_shape(n, bs, density, batch, rng) -> dict:
  topologies = [T.make("erdos_renyi", n, n, density=density, block_size=bs,
                       seed=s) for s in (0, 1)]
  ws = [t.to_bcsr(values=jnp.asarray(rng.standard_normal((t.nnzb, bs, bs)),
                                     jnp.float32)) for t in topologies]
  x = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((batch, n)), jnp.float32)
  params = ([w.values for w in ws],
            [jnp.asarray(rng.standard_normal(n), jnp.float32) for _ in ws])

  def loss(p, inside):
    h = x
    for w, v, b in zip(ws, *p):
      w = w.replace(values=v)
      h = jax.nn.relu(bsmm(h, w, bias=b) if inside else bsmm(h, w) + b[None])
    return jnp.sum(h * g)

  inside = jax.jit(jax.grad(lambda p: loss(p, True)))
  outside = jax.jit(jax.grad(lambda p: loss(p, False)))
  for a, b in zip(jax.tree.leaves(inside(params)),
                  jax.tree.leaves(outside(params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
  per_group = max(3, int(200 * 0.01 / max(density, 0.01) * (1000 / n) ** 2))
  ms = _interleaved({"bias_inside_bsmm": lambda: inside(params),
                 "bias_added_outside": lambda: outside(params)}, per_group)
  return {"n": n, "block_size": bs, "density": density, "batch": batch,
          "layers": 2, "ms_per_grad": ms,
          "inside_over_outside": ms["bias_inside_bsmm"] / ms["bias_added_outside"]}


def main(out: str) -> None:
  rng = np.random.default_rng(0)
  rows = [one_shape(*s, rng) for s in SHAPES]
  result = {"what": __doc__.split("\n\n")[0], "rows": rows,
            "environment": {**device_info(), **versions()}}
  with open(out, "w") as f:
    json.dump(result, f, indent=1)
  for r in rows:
    print(r["n"], r["block_size"], r["density"], r["batch"],
          {k: round(v, 3) for k, v in r["ms_per_grad"].items()},
          round(r["inside_over_outside"], 3))


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "out/bias_grad.json")
