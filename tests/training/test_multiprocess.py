"""Multi-process training on JAX's distributed runtime (CPU collectives over
gloo): 2 processes x 2 CPU devices each must train exactly as 1 process x 4
devices does; a killed process stops the job with a clear error and a
rerun resumes. Processes are started by experiments/launch_local.py (free
port at run time); every test is bounded by subprocess timeouts, and the
launcher stops all processes when one fails."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from snn_jax.kernels import native_cpu
from snn_jax.training import launch
from tests.conftest import REPO_ROOT

TRAIN = os.path.join(REPO_ROOT, "experiments", "train.py")
LAUNCH = os.path.join(REPO_ROOT, "experiments", "launch_local.py")

BASE = ["--hidden=64,64", "--epochs=2", "--density=0.3", "--data_parallel",
        "--batch_size=64", "--noprogress"]
# Every case trains statically between its rewirings, so plain data-parallel
# training is compared in each (a separate static case cost 30 s of suite).
CASES = {
    "set": ["--sparse_training=set"],
    "rigl": ["--sparse_training=rigl", "--update_every=5"],
    # fan-in 8 on widths divisible by 4: every layer's nnzb splits over the
    # 4 devices, so the block values really are sharded.
    "set_sharded": ["--sparse_training=set", "--shard_blocks",
                    "--topology=fixed_fan_in", "--fan_in=8", "--density=-1"],
}


def _flags(case):
  flags = BASE + CASES[case]
  if "--density=-1" in flags:  # fan-in given instead of density
    flags = [f for f in flags if not f.startswith("--density")]
  return flags


def _single_process(workdir, flags, devices=4):
  env = launch.process_env(devices)
  out = subprocess.run([sys.executable, TRAIN, f"--workdir={workdir}", *flags],
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


def _launch(workdir, flags, *, processes=2, devices=2, timeout=300):
  return subprocess.run(
      [sys.executable, LAUNCH, f"--num_processes={processes}",
       f"--devices_per_process={devices}",
       f"--process_log_dir={workdir}_logs", "--", TRAIN,
       f"--workdir={workdir}", *flags],
      capture_output=True, text=True, timeout=timeout)


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def _summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


# "set" (2 processes x 2 devices, unsharded) is compared epoch by epoch with
# one process by the killed-and-resumed test below, over 6 epochs.
@pytest.mark.parametrize("case", ["rigl", "set_sharded"])
@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path, case):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _single_process(one, _flags(case))
  out = _launch(two, _flags(case))
  assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
  a, b = _rows(one), _rows(two)
  assert [r["epoch"] for r in b] == [1, 2]
  for x, y in zip(a, b):
    np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(y["test_loss"], x["test_loss"], rtol=1e-5)
    assert y["rewired_blocks"] == x["rewired_blocks"]
    assert y["nnz_params"] == x["nnz_params"]
  s = _summary(two)
  assert s["processes"] == 2 and s["devices"] == 4
  if "--shard_blocks" in CASES[case]:
    assert s["sharded_arrays"] > 0 and s["sharded_arrays"] == _summary(one)[
        "sharded_arrays"]
  # The process that wrote nothing logged its own training.
  assert "epoch   2" in (tmp_path / "two_logs" / "process_1.log").read_text()


@pytest.mark.slow
def test_one_device_per_process_with_rewiring(tmp_path):
  """2 processes x 1 device against 1 process x 2 devices, SET: arrays
  the rewiring rebuilt must be re-placed over processes that each hold a
  single device (device_put failed there; parallel._to_sharding)."""
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _single_process(one, _flags("set"), devices=2)
  out = _launch(two, _flags("set"), devices=1)
  assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
  for x, y in zip(_rows(one), _rows(two)):
    np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-5)
    assert y["rewired_blocks"] == x["rewired_blocks"]


def _slurm_port():
  """A free port in the range JAX's SLURM detection derives from the job id
  (61440 + SLURM_JOB_ID % 4096); returns (port, job id)."""
  import random
  import socket
  start = random.randrange(4096)
  for i in range(4096):
    port = 61440 + (start + i) % 4096
    with socket.socket() as s:
      try:
        s.bind(("localhost", port))
      except OSError:
        continue
    return port, port - 61440
  pytest.skip("no free port in 61440-65535 for the emulated SLURM job")


@pytest.mark.slow
def test_distributed_auto_under_an_emulated_slurm_step(tmp_path):
  """``--distributed_auto`` as under ``srun -n 2``: each process gets only
  SLURM's variables (job id, step node list, task count, its rank) and JAX
  finds the coordinator, the process count and its id from them; the job
  trains as one process with the same devices does."""
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  flags = _flags("set")
  _single_process(one, flags, devices=2)
  _, job_id = _slurm_port()
  procs = []
  for rank in range(2):
    env = launch.process_env(1)
    env.update(SLURM_JOB_ID=str(job_id), SLURM_STEP_NODELIST="localhost",
               SLURM_NTASKS="2", SLURM_PROCID=str(rank),
               SLURM_LOCALID=str(rank), SLURM_STEP_NUM_NODES="1")
    log = open(tmp_path / f"rank{rank}.log", "w")  # files: no pipe to fill
    procs.append(subprocess.Popen(
        [sys.executable, TRAIN, f"--workdir={two}", "--distributed_auto",
         *flags], env=env, stdout=log, stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout=300) for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert codes == [0, 0], [(tmp_path / f"rank{r}.log").read_text()[-2000:]
                           for r in range(2)]
  for x, y in zip(_rows(one), _rows(two)):
    np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-5)
    assert y["rewired_blocks"] == x["rewired_blocks"]
  s = _summary(two)
  assert s["processes"] == 2 and s["devices"] == 2


def _children(pid):
  path = f"/proc/{pid}/task/{pid}/children"
  with open(path) as f:
    return [int(c) for c in f.read().split()]


def _cmdline(pid):
  with open(f"/proc/{pid}/cmdline", "rb") as f:
    return f.read().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"),
                    reason="finds the launched processes through /proc")
@pytest.mark.slow
def test_killed_process_stops_the_job_and_a_rerun_resumes(tmp_path):
  flags = [f for f in _flags("set") if f != "--epochs=2"] + ["--epochs=6"]
  ref = str(tmp_path / "ref")
  _single_process(ref, flags)
  wd = str(tmp_path / "run")
  proc = subprocess.Popen(
      [sys.executable, LAUNCH, "--num_processes=2", "--devices_per_process=2",
       f"--process_log_dir={wd}_logs", "--grace_s=20", "--", TRAIN,
       f"--workdir={wd}", *flags],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    metrics = os.path.join(wd, "metrics.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and not (
        os.path.exists(metrics) and len(_rows(wd)) >= 2):
      time.sleep(0.1)
    victim = [c for c in _children(proc.pid) if "--process_id=1" in _cmdline(c)]
    assert victim, "process 1 not found"
    os.kill(victim[0], signal.SIGKILL)
    t0 = time.time()
    _, err = proc.communicate(timeout=120)
    stopped_after = time.time() - t0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode != 0
  assert "process 1 of 2 was killed by SIGKILL" in err, err[-2000:]
  assert "Run the same command again to resume" in err
  assert stopped_after < 60, stopped_after
  done = len(_rows(wd))
  assert 2 <= done < 6, done
  out = _launch(wd, flags)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "resuming" in out.stdout
  got, want = _rows(wd), _rows(ref)
  assert [r["epoch"] for r in got] == list(range(1, 7))
  for x, y in zip(want, got):
    np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-5)
    assert y["rewired_blocks"] == x["rewired_blocks"]


@pytest.mark.slow
def test_divergent_topologies_fail_loudly(tmp_path):
  """check_same_topology compares a fingerprint of every process's topology
  after a rewiring; processes holding different graphs stop with a message."""
  script = tmp_path / "diverge.py"
  script.write_text(f"""
import sys
sys.path.insert(0, {REPO_ROOT!r})
from absl import app, flags
flags.DEFINE_string("coordinator_address", None, "")
flags.DEFINE_integer("num_processes", 1, "")
flags.DEFINE_integer("process_id", 0, "")
F = flags.FLAGS

def main(argv):
  from snn_jax.training import parallel
  parallel.initialize_distributed(F.coordinator_address, F.num_processes,
                                  F.process_id)
  from snn_jax import topology
  stack = topology.make_stack("erdos_renyi", [32, 32], density=0.2,
                              seed=F.process_id)  # differs per process
  parallel.check_same_topology(stack, step=7)

app.run(main)
""")
  out = subprocess.run(
      [sys.executable, LAUNCH, "--num_processes=2", "--devices_per_process=1",
       f"--process_log_dir={tmp_path}/logs", "--", str(script)],
      capture_output=True, text=True, timeout=180)
  assert out.returncode != 0
  assert "topologies diverged across processes after the rewiring at step 7" \
      in out.stderr + out.stdout


@pytest.mark.slow
def test_launcher_usage_errors(tmp_path):
  out = subprocess.run([sys.executable, LAUNCH, "--num_processes=2"],
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and "give the binary" in out.stderr
  out = subprocess.run([sys.executable, LAUNCH, "--", "nowhere.py"],
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and "'nowhere.py' does not exist" in out.stderr
  with pytest.raises(ValueError, match="together"):
    from snn_jax.training import parallel
    parallel.initialize_distributed("localhost:1", None, 0)


def test_process_env_sets_the_device_count():
  env = launch.process_env(3, {"XLA_FLAGS": "--xla_foo=1 "
                               "--xla_force_host_platform_device_count=8"})
  assert env["XLA_FLAGS"].split() == [
      "--xla_foo=1", "--xla_force_host_platform_device_count=3"]


SHARED_GC = os.path.join(REPO_ROOT, "..", "shared", "datasets", "graph_challenge")


@pytest.mark.skipif(not os.path.isdir(SHARED_GC),
                    reason="../shared/datasets/graph_challenge is absent "
                    "(a user's clone)")
@pytest.mark.slow
def test_graph_challenge_across_two_processes(tmp_path):
  """The official 1,024 x 120 network, its 1,200 inputs split over two
  processes (600 each): the gathered categories equal the official truth,
  and the row reports the whole job's rate."""
  out = subprocess.run(
      [sys.executable, LAUNCH, "--num_processes=2",
       f"--process_log_dir={tmp_path}/logs", "--",
       os.path.join(REPO_ROOT, "experiments", "graph_challenge.py"),
       f"--official_dir={SHARED_GC}", f"--output_dir={tmp_path}/out"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  [table] = [f for f in os.listdir(tmp_path / "out") if f.endswith(".json")]
  rows = json.loads((tmp_path / "out" / table).read_text())
  fused = ["fused_bs1"] if native_cpu.AVAILABLE else []
  assert [r["method"] for r in rows] == ["bsmm_bs1", *fused]
  for row in rows:
    assert row["categories_match"]
    assert row["categories"] == 19 and row["reference"] == "official truth"
    assert row["processes"] == 2 and row["inputs_per_process"] == [600, 600]
    assert row["seconds"] == max(row["seconds_per_process"])
