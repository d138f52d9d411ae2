"""Flags that join a JAX multi-process job, shared by the binaries that can
run as several processes (train.py, graph_challenge.py):
``--coordinator_address --num_processes --process_id`` (what
``experiments/launch_local.py`` appends), or ``--distributed_auto`` on a
cluster that JAX detects (SLURM, Open MPI, Kubernetes)."""

from absl import flags

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process: host:port of process 0 "
    "(jax.distributed.initialize); with --num_processes and --process_id. "
    "experiments/launch_local.py sets all three for processes on one machine.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1,
                                      "Multi-process: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0,
                                   "Multi-process: this process (0-based).")
_DISTRIBUTED_AUTO = flags.DEFINE_bool(
    "distributed_auto", False, "Multi-process on a cluster: let JAX detect the "
    "processes from the environment (SLURM srun, Open MPI mpirun, Kubernetes) "
    "instead of --coordinator_address.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_s", 30, "Multi-process: a process whose peers stop "
    "answering for this long fails instead of waiting.", lower_bound=5)


def maybe_initialize() -> None:
  """Joins a multi-process job when --coordinator_address or
  --distributed_auto is given; checks the flags' combination."""
  from snn_jax.training import parallel
  if _COORDINATOR.value and _DISTRIBUTED_AUTO.value:
    raise ValueError("--coordinator_address and --distributed_auto exclude "
                     "each other: give the processes yourself or let JAX "
                     "detect them")
  if _COORDINATOR.value:
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value,
                                    heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value)
  elif _DISTRIBUTED_AUTO.value:
    parallel.initialize_distributed(heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value)
  elif _NUM_PROCESSES.value != 1 or _PROCESS_ID.value != 0:
    raise ValueError("--num_processes/--process_id need --coordinator_address "
                     "(host:port of process 0)")
