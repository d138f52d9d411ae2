r"""Start N processes of a training binary on this machine as one JAX
multi-process job (what a cluster scheduler does across machines):

  python experiments/launch_local.py --num_processes=2 --devices_per_process=2 \
      -- experiments/train.py --workdir=out/mp --data_parallel

Every process gets ``--coordinator_address=localhost:<free port>
--num_processes=N --process_id=i`` appended, and (on CPU) ``XLA_FLAGS``
asking for ``--devices_per_process`` devices. Process 0 prints to this
terminal; the others log to ``<process_log_dir>/process_<i>.log``. If any process
fails (or is killed), the others are stopped within ``--grace_s`` seconds
and this launcher exits with that process's status, naming it; rerunning
the same command resumes from the last epoch every process saved. Ctrl-C
stops all of them.
"""

import sys
import tempfile

from absl import app, flags

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax.training import launch

_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Processes to start.",
                                      lower_bound=1)
_DEVICES = flags.DEFINE_integer(
    "devices_per_process", 1, "CPU devices per process (XLA's "
    "--xla_force_host_platform_device_count).", lower_bound=1)
_PROCESS_LOG_DIR = flags.DEFINE_string(
    "process_log_dir", None, "Where processes 1..N-1 log (default: a new temporary "
    "directory, printed).")
_GRACE = flags.DEFINE_float(
    "grace_s", 10.0, "After one process fails, how long the others get to "
    "stop on their own before they are killed.", lower_bound=0.0)


def main(argv):
  command = argv[1:]
  if not command:
    raise app.UsageError("give the binary and its flags after --, e.g. "
                         "-- experiments/train.py --workdir=out/mp --data_parallel")
  log_dir = _PROCESS_LOG_DIR.value or tempfile.mkdtemp(prefix="snn_jax_launch_")
  try:
    result = launch.run_local(command, _NUM_PROCESSES.value,
                              devices_per_process=_DEVICES.value,
                              log_dir=log_dir, grace_s=_GRACE.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  except KeyboardInterrupt:
    raise cli.Interrupted("every process was stopped; run the same command "
                          "again to resume") from None
  if result.failed is not None:
    print(f"error: {result.message}", file=sys.stderr)
    sys.exit(result.returncode or 1)


if __name__ == "__main__":
  cli.run(main)
