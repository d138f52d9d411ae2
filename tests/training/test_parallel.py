"""Data parallelism on the suite's 4 forced CPU devices (conftest)."""

import json
import os

import jax
import numpy as np
import pytest

from snn_jax.training import TrainConfig, train_and_evaluate
from snn_jax.training import RunConfig

pytestmark = [pytest.mark.skipif(
    jax.device_count() < 4, reason="needs 4 devices (XLA_FLAGS="
    "--xla_force_host_platform_device_count=4, set by tests/conftest.py)"),
    pytest.mark.standard_promotion]


BASE = dict(hidden=(64, 64), density=0.2, epochs=3, batch_size=64,
            progress=False, lr=0.05, block_size=(4, 4, 2))


def _losses(wd):
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    return np.array([[r["train_loss"], r["test_loss"]] for r in map(json.loads, f)])


@pytest.mark.parametrize("extra", [dict(), dict(shard_blocks=True),
                                   dict(sparse_training="set"),
                                   dict(sparse_training="rigl", update_every=7)])
@pytest.mark.slow
def test_four_devices_follow_the_one_device_trajectory(tmp_path, extra):
  single = {k: v for k, v in extra.items() if k != "shard_blocks"}
  one = train_and_evaluate(TrainConfig.from_flat(dict(**BASE, **single)), str(tmp_path / "one"))
  four = train_and_evaluate(TrainConfig.from_flat(dict(**BASE, **extra, data_parallel=True)),
                            str(tmp_path / "four"))
  assert (one["devices"], four["devices"]) == (1, 4)
  # Only the order of the batch sums differs (per-device partial sums).
  np.testing.assert_allclose(_losses(tmp_path / "four"), _losses(tmp_path / "one"),
                             rtol=2e-4)
  assert four["final_test_acc"] == pytest.approx(one["final_test_acc"], abs=0.01)


def test_batch_must_split_evenly(tmp_path):
  with pytest.raises(ValueError, match="multiple of the 4 devices"):
    train_and_evaluate(TrainConfig.from_flat(dict(**{**BASE, "batch_size": 66},
                                   data_parallel=True)), str(tmp_path / "x"))
  with pytest.raises(ValueError, match="needs data_parallel"):
    TrainConfig(run=RunConfig(shard_blocks=True))


def test_shard_blocks_splits_values(tmp_path):
  from flax import nnx
  from snn_jax import topology
  from snn_jax.nn import SparseMLP
  from snn_jax.training import parallel
  topos = topology.make_stack("fixed_fan_in", [64, 64, 16], fan_in=8, seed=0)
  model = SparseMLP(topos, rngs=nnx.Rngs(params=0))
  mesh = parallel.data_mesh()
  parallel.place(mesh, model, shard_blocks=True)
  v = model.layers[0].values.get_value()
  assert v.sharding.spec == jax.sharding.PartitionSpec("data")
  assert len({s.device for s in v.addressable_shards}) == 4
  assert v.addressable_shards[0].data.shape[0] == v.shape[0] // 4
  b = model.layers[0].bias.get_value()
  assert b.sharding.is_fully_replicated


@pytest.mark.parametrize("block_size", [1, 32])  # feature-major, row-major
def test_native_kernels_split_the_batch_over_the_mesh(block_size):
  """The native FFI calls are partitioned, not gathered: each device runs
  forward, dX, dW (at block size 1 one fused call with two results) and
  the bias gradient on its own quarter of the batch
  (dW and the bias gradient then all-reduced), with the gradients of the
  one-device run."""
  import re

  import jax.numpy as jnp
  from snn_jax import topology
  from snn_jax.kernels import native_cpu
  from snn_jax.ops import bsmm
  from snn_jax.training import parallel
  if not native_cpu.AVAILABLE:
    pytest.skip(native_cpu.UNAVAILABLE_REASON)
  keys = jax.random.split(jax.random.PRNGKey(block_size), 3)
  w = topology.make("erdos_renyi", 256, 128, density=0.2, block_size=block_size,
                    seed=block_size).to_bcsr()
  values = jax.random.normal(keys[0], w.values.shape)
  bias = jax.random.normal(keys[1], (128,))
  x = np.asarray(jax.random.normal(keys[2], (64, 256)))

  def loss(x, values, bias):
    y = bsmm(x, w.replace(values=values), bias=bias, impl="native_cpu")
    return jnp.sum(jnp.tanh(y) ** 2)

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  (x_split,) = parallel.shard_batch(parallel.data_mesh(), x)
  for one, four in zip(jax.tree.leaves(step(x, values, bias)),
                       jax.tree.leaves(step(x_split, values, bias))):
    np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-5 * np.abs(one).max())
  hlo = step.lower(x_split, values, bias).compile().as_text()
  calls = [l for l in hlo.splitlines() if 'custom_call_target="snn_jax_' in l]
  targets = {re.search(r'custom_call_target="(\w+)"', l).group(1) for l in calls}
  # block size 1: dX and dW in one fused call (its dX split, its dW summed)
  backward = ({"snn_jax_bsmm_bwd"} if block_size == 1 else
              {"snn_jax_bsmm_dx", "snn_jax_bsmm_dw"})
  assert targets == {"snn_jax_bsmm_fwd", "snn_jax_bias_grad", *backward}
  for line in calls:
    assert "[16," in line and "[64," not in line, line
  assert "all-gather" not in hlo
  assert "all-reduce" in hlo
