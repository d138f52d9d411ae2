"""Alford et al.'s LeNet-5 training step, for every configuration of the
authors' sheet, with the convolutions native against dense (issue 40,
item 4), and the kernel density where a convolution's training work
(forward + dX + dW) runs faster dense (``kernels.tuning.
CPU_CONV_DENSE_THRESHOLD``).

Part 1, the step. ``nn.AlfordLeNet5`` at batch 100 as the Alford
reproduction trains it (``reproduce.alford2019_paper``: SGD with weight
decay, the step as ``fit`` runs it, model and optimizer donated), on random
inputs. Each distinct configuration of the sheet's LeNet-5 rows -- the
second convolution's channels and the density of its two sparse layers
(conv2 and the fully connected layer; the first convolution and the logits
stay dense) -- is timed three ways in one interleaved loop:

  ``auto``        conv_impl "auto" (what the reproductions run);
  ``dense_conv``  the same network, its convolutions XLA's dense ones;
  ``dense_net``   the dense LeNet-5 of the same widths (every layer dense,
                  the baseline the issue names).

A sheet row's step cost depends on its widths and density, not on which
weights survive, so the sparse layers are Erdos-Renyi at that density
(pruned and random rows at one density share a row here). Rows of gradual
pruning ("iterative_pruned") keep every weight stored until the end
(``sparse_training._prune``): their steps are the dense net's.

Part 2, the threshold. The second convolution alone (20 -> c2 channels,
14 x 14, batch 100), forward + dX + dW under ``jax.grad``, native against
dense, over a grid of densities.

Usage (repo root; an idle machine):
  python benchmarks/lenet5_step.py [output.json]
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import set_step_breakdown  # noqa: E402  (a sibling benchmark script)

from snn_jax.conv import sparse_conv2d  # noqa: E402
from snn_jax.nn import AlfordLeNet5  # noqa: E402
from snn_jax.reproduce import alford2019_paper  # noqa: E402
from snn_jax.sparse import BlockCSR  # noqa: E402
from snn_jax.topology import make  # noqa: E402
from snn_jax.training import loop  # noqa: E402
from snn_jax.training.config import TrainConfig  # noqa: E402
from snn_jax.utils import write_json  # noqa: E402
from snn_jax.utils.env import device_info, versions  # noqa: E402

BATCH = 100
GROUPS = 5
STEPS_PER_GROUP = 5
# (conv2 channels, density of conv2 and the fully connected layer) -> the
# sheet's LeNet-5 rows it stands for (data/alford2019_sheet.csv).
CONFIGS = {
    (50, 1.0): "dense; iterative_pruned (every weight stays stored)",
    (50, 0.5): "one_time/iterative_retrained s0.5; random d0.5",
    (50, 0.25): "one_time/iterative_retrained s0.75",
    (50, 0.1): "one_time/iterative_retrained s0.9; random d0.1",
    (50, 0.05): "one_time/iterative_retrained s0.95; random d0.05",
    (50, 0.01): "one_time/iterative_retrained s0.99; random d0.01",
    (100, 0.5): "wider x2 (density 1/2)",
    (500, 0.1): "wider x10 (density 1/10)",
}
# conv2 channels -> densities of part 2 (the wide net's dense conv2 costs
# about half a second per call: fewer points there).
THRESHOLD_DENSITIES = {
    50: (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0),
    500: (0.05, 0.1, 0.2, 0.3),
}


def _topologies(c2: int, density: float, seed: int = 0):
  shapes = AlfordLeNet5.layer_shapes((c2, 384), 10)
  return [make("erdos_renyi", a, b, density=density, seed=seed + l)
          if l in (1, 2) and density < 1.0 else make("dense", a, b)
          for l, (a, b) in enumerate(shapes)]


def _step_fn(topologies, conv_impl: str, cfg: TrainConfig, xs, ys):
  model = AlfordLeNet5(topologies, conv_impl=conv_impl, rngs=nnx.Rngs(0))
  tx, _ = loop.make_optimizer(cfg, 550)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  step = nnx.cached_partial(loop._fit_step, model, opt)
  i = [0]

  def run():
    i[0] = (i[0] + 1) % len(xs)
    return step(xs[i[0]], ys[i[0]])[0]
  return run


def _interleaved(fns: dict, per_group: int) -> dict:
  """Median over GROUPS of ms per call, the functions in turn per group."""
  return set_step_breakdown._interleaved(fns, per_group, GROUPS, np.median)


def step_rows(rng) -> list[dict]:
  cfg = alford2019_paper._model_base(
      alford2019_paper.paper_config(TrainConfig()), "lenet5")
  xs = [jnp.asarray(rng.standard_normal((BATCH, 784)), jnp.float32)
        for _ in range(4)]
  ys = [jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32) for _ in range(4)]
  rows = []
  for (c2, density), sheet_rows in CONFIGS.items():
    tops = _topologies(c2, density)
    dense_tops = _topologies(c2, 1.0)
    fns = {"auto": _step_fn(tops, "auto", cfg, xs, ys),
           "dense_conv": _step_fn(tops, "dense", cfg, xs, ys),
           "dense_net": _step_fn(dense_tops, "dense", cfg, xs, ys)}
    ms = _interleaved(fns, STEPS_PER_GROUP)
    probe = AlfordLeNet5(tops, rngs=nnx.Rngs(0))
    row = {"conv2_channels": c2, "density": density, "sheet_rows": sheet_rows,
           "conv2_impl": probe.layers[1].conv_impl("auto"),
           **{f"{k}_ms": v for k, v in ms.items()},
           "auto_over_dense_net": ms["auto"] / ms["dense_net"]}
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


def threshold_rows(rng) -> list[dict]:
  rows = []
  for c2, densities in THRESHOLD_DENSITIES.items():
    x = jnp.asarray(rng.standard_normal((BATCH, 14, 14, 20)), jnp.float32)
    for density in densities:
      mask = rng.random((500, c2)) < density
      w = BlockCSR.from_dense(
          (rng.standard_normal(mask.shape) * mask).astype(np.float32), 1)
      fns = {}
      for impl in ("native_cpu", "dense"):
        grad = jax.jit(jax.grad(
            lambda x, v, impl=impl, w=w: jnp.sum(sparse_conv2d(
                x, w.replace(values=v), impl=impl) ** 2), argnums=(0, 1)))
        fns[impl] = lambda grad=grad, w=w: grad(x, w.values)
      ms = _interleaved(fns, STEPS_PER_GROUP)
      row = {"conv2_channels": c2, "density": density, "nnz": int(w.nnzb),
             **{f"{k}_fwd_dx_dw_ms": v for k, v in ms.items()},
             "native_over_dense": ms["native_cpu"] / ms["dense"]}
      print(json.dumps(row), flush=True)
      rows.append(row)
  return rows


def main(out: str) -> None:
  rng = np.random.default_rng(0)
  result = {"benchmark": "lenet5_step", "batch": BATCH, "groups": GROUPS,
            "steps_per_group": STEPS_PER_GROUP, "device": device_info(),
            "versions": versions(), "data": "random inputs",
            "threshold": threshold_rows(rng), "steps": step_rows(rng)}
  write_json(out, result)
  print("wrote", out)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(
      "benchmarks", "cpu", f"lenet5_step_{time.strftime('%Y%m%d')}.json"))
