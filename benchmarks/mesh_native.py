"""The native kernels on a data-parallel mesh: partitioned (each device runs
its own rows of the batch, dW and the bias gradient all-reduced; what
``kernels/native_cpu.py`` does now) against gathered (every device runs the
whole batch, what XLA made of the unpartitioned FFI call before). One
training step's gradient of a SET-sized MLP (784-1000-1000-1000-10,
Erdos-Renyi epsilon 20, block size 1, batch 256), on 4 CPU devices forced
onto this machine's cores, and on one device for scale; the two variants
alternate in one process on fresh random batches.

Usage (repo root; an idle machine): python benchmarks/mesh_native.py [out.json]
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from snn_jax import topology  # noqa: E402
from snn_jax.kernels import native_cpu  # noqa: E402
from snn_jax.ops import bsmm  # noqa: E402
from snn_jax.training import parallel  # noqa: E402
from snn_jax.utils.env import device_info, versions  # noqa: E402

WIDTHS = (784, 1000, 1000, 1000, 10)
BATCH = 256
ROUNDS, REPEATS = 3, 10


@contextlib.contextmanager
def gathered():
  """The kernels as plain FFI calls, which XLA's partitioner gathers."""
  original = native_cpu._partitioned

  def plain(kernel, static, *unused):
    return lambda *arrays: kernel(*arrays, **dict(static))

  native_cpu._partitioned = plain
  try:
    yield
  finally:
    native_cpu._partitioned = original


def _loss(params, structures, x, y):
  h = x
  for i, ((values, bias), w) in enumerate(zip(params, structures)):
    h = bsmm(h, w.replace(values=values), bias=bias, impl="native_cpu")
    if i < len(structures) - 1:
      h = jax.nn.relu(h)
  return jnp.mean(jax.nn.logsumexp(h, axis=-1)
                  - jnp.take_along_axis(h, y[:, None], axis=-1)[:, 0])


def _median_ms(step, params, batches):
  times = []
  for x, y in batches * (REPEATS // len(batches)):
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, x, y))
    times.append(1e3 * (time.perf_counter() - t0))
  return float(np.median(times))


def main(out: str | None) -> None:
  rng = np.random.default_rng(0)
  structures = [topology.make("erdos_renyi", a, b, epsilon=20, seed=i,
                               cap_density=True).to_bcsr()
                for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:]))]
  params = [(jnp.asarray(rng.standard_normal(w.values.shape) * 0.1, jnp.float32),
             jnp.zeros(w.shape[1], jnp.float32)) for w in structures]
  hosts = [(rng.standard_normal((BATCH, WIDTHS[0])).astype(np.float32),
            rng.integers(0, 10, BATCH).astype(np.int32)) for _ in range(2)]
  mesh = parallel.data_mesh()
  split = [parallel.shard_batch(mesh, x, y) for x, y in hosts]
  one = [(jnp.asarray(x), jnp.asarray(y)) for x, y in hosts]

  def new_step():
    return jax.jit(lambda p, x, y: jax.grad(_loss)(p, structures, x, y))

  variants = {}
  steps = {"partitioned_4dev": (new_step(), split, False),
           "gathered_4dev": (new_step(), split, True),
           "one_device": (new_step(), one, False)}
  for step, batches, gather in steps.values():  # compile
    with gathered() if gather else contextlib.nullcontext():
      jax.block_until_ready(step(params, *batches[0]))
  for _ in range(ROUNDS):
    for name, (step, batches, gather) in steps.items():
      variants.setdefault(name, []).append(_median_ms(step, params, batches))
  result = {
      "what": "grad of a 784-1000-1000-1000-10 MLP, Erdos-Renyi eps 20, "
              f"block size 1, batch {BATCH}, native_cpu; 4 forced CPU devices",
      "step_ms_per_round": variants,
      "step_ms_median": {k: float(np.median(v)) for k, v in variants.items()},
      "device": device_info(), "versions": versions(),
  }
  m = result["step_ms_median"]
  result["gathered_over_partitioned"] = m["gathered_4dev"] / m["partitioned_4dev"]
  print(json.dumps({k: result[k] for k in ("step_ms_median",
                                           "gathered_over_partitioned")}, indent=1))
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else None)
