"""Data parallelism on a ``jax.sharding.Mesh`` of all devices.

The training step is written for one device; here only *where* arrays live
changes, and ``jit``'s SPMD partitioner does the rest:

* the batch is split along its first axis over the mesh axis ``"data"``;
* parameters, topology index arrays and optimizer state are replicated, so
  the gradient of the block values (a sum over the batch) becomes a
  per-device partial sum plus an all-reduce inserted by XLA;
* with ``shard_blocks``, every array whose leading axis is a layer's nnzb
  (block values and their optimizer moments) is instead split along nnzb
  over the devices, so a layer too large for one device's memory is stored
  in pieces. The gather/scatter kernels address blocks by global index, so
  XLA all-gathers a layer's values before its kernels run: this divides the
  *resident* memory of parameters and optimizer state, not the transient
  memory of one layer's step.

Multi-host: call :func:`initialize_distributed` first (every process, same
arguments but its own ``process_id``); each process then feeds its share of
every global batch (:func:`shard_batch` takes the local rows), and the mesh
spans all processes' devices. This path is written against
``jax.distributed`` and ``jax.make_array_from_process_local_data`` but has
been run with 2 local processes x 2 CPU devices against 1 process x 4
devices (tests/training/test_multiprocess.py: the same losses).
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, *,
                           heartbeat_timeout_s: int = 30,
                           initialization_timeout_s: int = 120) -> None:
  """``jax.distributed.initialize`` with validated arguments.

  Give all three of ``coordinator_address`` (host:port of process 0),
  ``num_processes`` and ``process_id``, or none of them: then JAX detects
  the cluster from its environment (SLURM, Open MPI's ``mpirun``,
  Kubernetes; see README). A process whose peers stop answering for
  ``heartbeat_timeout_s`` seconds fails instead of waiting forever.
  """
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise ValueError("give coordinator_address, num_processes and process_id "
                     "together, or none of them (cluster auto-detection)")
  if num_processes is not None and (
      num_processes < 1 or not 0 <= process_id < num_processes):
    raise ValueError(f"need 0 <= process_id < num_processes, got {process_id} "
                     f"of {num_processes}")
  # CPU collectives across processes go over gloo (TCP); GPU/TPU use their
  # own. Must be set before the first backend is created.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s,
                             initialization_timeout=initialization_timeout_s)


def data_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, axis ``"data"``, with
  automatic (compiler-propagated) shardings inside jit."""
  return Mesh(np.asarray(jax.devices()), (AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} must be a multiple of the "
                     f"{n} devices for data parallelism")


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
  """Global host batches -> arrays split along axis 0 over the mesh. With
  several processes each passes the full global batch and contributes the
  rows that belong to its devices."""
  sharding = NamedSharding(mesh, P(AXIS))
  out = []
  for a in arrays:
    if jax.process_count() == 1:
      out.append(jax.device_put(a, sharding))
    else:
      rows = len(a) // jax.process_count()
      local = a[jax.process_index() * rows:(jax.process_index() + 1) * rows]
      out.append(jax.make_array_from_process_local_data(sharding, local, a.shape))
  return tuple(out)


def _block_counts(model) -> set[int]:
  return {layer.values.get_value().shape[0] for layer in model.layers}


def _to_sharding(x: jax.Array, sharding: NamedSharding) -> jax.Array:
  """``x`` laid out as ``sharding``. With several processes the array is
  rebuilt from its whole host value on every process
  (``make_array_from_callback``): arrays that rewiring produced from
  global arrays by eager ops cannot always be re-placed with
  ``device_put`` across processes (seen with one device per process)."""
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  if not x.is_fully_addressable:
    if x.is_fully_replicated:
      host = np.asarray(x.addressable_data(0))
    else:
      from jax.experimental import multihost_utils
      host = np.asarray(multihost_utils.process_allgather(x, tiled=True))
  else:
    host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def place(mesh: Mesh, model, optimizer: nnx.Optimizer | None = None, *,
          shard_blocks: bool = False) -> int:
  """Puts model (and optimizer) state on the mesh: replicated, or with
  ``shard_blocks`` split along nnzb where nnzb is a multiple of the device
  count (other arrays stay replicated). Returns how many arrays were
  split."""
  n = mesh.devices.size
  counts = _block_counts(model) if shard_blocks else set()
  replicated = NamedSharding(mesh, P())
  split = NamedSharding(mesh, P(AXIS))
  split_count = [0]

  def put(x):
    if not isinstance(x, jax.Array):
      return x
    if (shard_blocks and x.ndim == 3 and x.shape[0] in counts
        and x.shape[0] % n == 0):
      split_count[0] += 1
      return _to_sharding(x, split)
    return _to_sharding(x, replicated)

  for obj in (model, optimizer):
    if obj is None:
      continue
    state = nnx.state(obj)
    nnx.update(obj, jax.tree.map(put, state))
  return split_count[0]


def topology_fingerprint(stack) -> str:
  """sha256 of a stack of topologies' block coordinates and shapes."""
  import hashlib
  h = hashlib.sha256()
  for t in stack:
    h.update(np.asarray([t.n_in, t.n_out, t.block_size], np.int64).tobytes())
    h.update(np.asarray(t.rows, np.int64).tobytes())
    h.update(np.asarray(t.cols, np.int64).tobytes())
  return h.hexdigest()


def check_same_topology(stack, *, step: int) -> None:
  """Raises ``RuntimeError`` unless every process holds the same topology
  after a rewiring at ``step`` (same seed, same gathered inputs: they must
  agree; a mismatch means the processes' models have diverged). Every
  process must call it; with one process it returns at once."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils
  digest = topology_fingerprint(stack)
  mine = np.frombuffer(bytes.fromhex(digest)[:8], np.int64)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1)
  if not (every == every[0]).all():
    bad = sorted(int(i) for i in np.flatnonzero(every != every[0]))
    raise RuntimeError(
        f"topologies diverged across processes after the rewiring at step "
        f"{step}: processes {bad} differ from process 0 (fingerprint "
        f"{digest[:16]} on process {jax.process_index()}); the run cannot "
        "continue consistently -- check that every process runs the same "
        "code, flags and data")
