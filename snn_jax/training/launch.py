"""Several processes of one binary on this machine as a JAX multi-process
job (``experiments/launch_local.py``): a free coordinator port, per-process
flags and device counts, and supervision -- when one process fails the
others are stopped within a bounded time instead of waiting on collectives
that will never complete."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence


def free_port() -> int:
  """A TCP port on localhost that was free a moment ago."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(devices_per_process: int,
                base: dict[str, str] | None = None) -> dict[str, str]:
  """The environment of one process: ``XLA_FLAGS`` with the CPU device
  count replaced (other XLA flags kept)."""
  env = dict(os.environ if base is None else base)
  kept = [f for f in env.get("XLA_FLAGS", "").split()
          if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(
      kept + [f"--xla_force_host_platform_device_count={devices_per_process}"])
  return env


@dataclasses.dataclass
class LaunchResult:
  """How a launch ended: ``failed`` is the first process that exited with
  an error (None when all succeeded), ``returncodes`` every process's exit
  status (negative: killed by that signal)."""
  returncodes: list[int]
  failed: int | None
  message: str

  @property
  def returncode(self) -> int:
    return 0 if self.failed is None else (self.returncodes[self.failed] or 1)


def _describe(code: int) -> str:
  if code < 0:
    try:
      return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
      return f"was killed by signal {-code}"
  return f"exited with status {code}"


def run_local(command: Sequence[str], num_processes: int, *,
              devices_per_process: int = 1, log_dir: str,
              grace_s: float = 10.0, port: int | None = None,
              poll_s: float = 0.1) -> LaunchResult:
  """Runs ``python <command> --coordinator_address=localhost:<port>
  --num_processes=N --process_id=i`` for i < N and waits for all.

  Process 0 inherits this process's stdout/stderr; process i > 0 writes
  ``<log_dir>/process_<i>.log``. When a process exits with an error, the
  others get ``grace_s`` seconds to stop by themselves (JAX's collectives
  fail once a peer is gone) and are then terminated (SIGTERM, then SIGKILL).
  """
  if num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}")
  if not command:
    raise ValueError("empty command")
  if not os.path.exists(command[0]):
    raise ValueError(f"{command[0]!r} does not exist: give the binary's path "
                     "first, e.g. experiments/train.py")
  os.makedirs(log_dir, exist_ok=True)
  port = port or free_port()
  env = process_env(devices_per_process)
  procs, logs = [], []
  try:
    for i in range(num_processes):
      args = [sys.executable, *command, f"--coordinator_address=localhost:{port}",
              f"--num_processes={num_processes}", f"--process_id={i}"]
      if i == 0:
        out = None
      else:
        out = open(os.path.join(log_dir, f"process_{i}.log"), "w")
        logs.append(out)
      procs.append(subprocess.Popen(args, env=env, stdout=out,
                                    stderr=subprocess.STDOUT if out else None))
    failed = None
    while True:
      codes = [p.poll() for p in procs]
      bad = [i for i, c in enumerate(codes) if c not in (None, 0)]
      if bad:
        # A process killed by a signal is the cause; peers that then exit
        # with an error (their collectives failed) are the consequence.
        failed = min(bad, key=lambda i: (codes[i] >= 0, i))
        break
      if all(c == 0 for c in codes):
        break
      time.sleep(poll_s)
    if failed is not None:
      deadline = time.monotonic() + grace_s
      while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(poll_s)
      _stop(procs)
  except BaseException:
    _stop(procs)
    raise
  finally:
    for f in logs:
      f.close()
  codes = [p.returncode for p in procs]
  if failed is None:
    return LaunchResult(codes, None, f"all {num_processes} processes finished")
  where = ("its output is above" if failed == 0 else
           f"its log: {os.path.join(log_dir, f'process_{failed}.log')}")
  others = ", ".join(f"{i}: {_describe(c)}" for i, c in enumerate(codes)
                     if i != failed and c != 0) or "none"
  return LaunchResult(
      codes, failed,
      f"process {failed} of {num_processes} {_describe(codes[failed])} "
      f"({where}); the others were stopped (failed or stopped: {others}). "
      "Run the same command again to resume from the last epoch every "
      "process saved")


def _stop(procs: list[subprocess.Popen], wait_s: float = 5.0) -> None:
  for p in procs:
    if p.poll() is None:
      p.terminate()
  deadline = time.monotonic() + wait_s
  for p in procs:
    try:
      p.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
