"""What a learning-rate schedule costs one SET-MLP training step: the step
as ``fit`` runs it (784-1000-1000-1000-10, epsilon 20, batch 128, nesterov
momentum) with a constant rate, with the cosine schedule as optax gives it
(XLA fused the scalar into every parameter's update and evaluated it per
element) and with the cosine evaluated once per step as
``OptimizerConfig.make`` now does (``_computed_once``), interleaved in one
process on rotating random batches.

Usage (repo root; an idle machine): python benchmarks/lr_schedule_step.py
[out.json]
"""

import json
import sys

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from set_step_breakdown import BATCH, _config, _interleaved  # this directory
from snn_jax.training import loop
from snn_jax.training.config import _computed_once
from snn_jax.utils.env import device_info, versions

ROUNDS = 2


def main(out: str) -> None:
  rng = np.random.default_rng(0)
  cfg = _config(sparse=True)
  cosine = optax.cosine_decay_schedule(0.05, 469 * 10)
  rates = {"constant": 0.05, "cosine_fused_per_element": cosine,
           "cosine_computed_once": _computed_once(cosine)}
  xs = [jnp.asarray(rng.standard_normal((BATCH, 784)), jnp.float32)
        for _ in range(4)]
  ys = [jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32) for _ in range(4)]
  steps = {}
  for name, rate in rates.items():
    model = loop.build_model(cfg, loop.build_topologies(cfg, 784, 10))
    opt = nnx.Optimizer(model, optax.sgd(rate, momentum=0.9, nesterov=True),
                        wrt=nnx.Param)
    step = nnx.cached_partial(loop._fit_step, model, opt)
    turn = [0]

    def run(step=step, turn=turn):
      turn[0] = (turn[0] + 1) % 4
      return step(xs[turn[0]], ys[turn[0]])
    steps[name] = run
  rounds = [_interleaved(steps, 200) for _ in range(ROUNDS)]
  result = {"what": __doc__.split("\n\n")[0], "ms_per_step_by_round": rounds,
            "environment": {**device_info(), **versions()}}
  with open(out, "w") as f:
    json.dump(result, f, indent=1)
  for r in rounds:
    print({k: round(v, 3) for k, v in r.items()})


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "out/lr_schedule_step.json")
