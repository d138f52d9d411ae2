"""What a user sees when a binary fails or is interrupted: one line, the
right exit code, no traceback, no docstring; flag names and aliases."""

import gzip
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from snn_jax import data
from tests.conftest import REPO_ROOT



# C++ log lines that libraries print at start-up before any of our code runs
# -- with the accelerator toolchains installed, jaxlib loading the CUDA
# plugin's extensions logs "Could not find cuda drivers" at `import jax` on
# a machine without a GPU -- in glog's format, which snn_jax never writes.
_FOREIGN_LOG = re.compile(r"^([IWEF]\d{4} \S+ +\d+ \S+:\d+\] |WARNING: All log "
                          r"messages before absl::InitializeLog\(\) is called)")


def _our_lines(stderr: str) -> list[str]:
  """The non-empty stderr lines a binary wrote itself."""
  return [l for l in stderr.splitlines()
          if l.strip() and not _FOREIGN_LOG.match(l)]


def _binary(name, *args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments",
                                                      f"{name}.py"), *args],
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name,args,match", [
    ("train", ["--hidden=abc"], "bad --hidden"),
    ("train", ["--dataset=mnist", "--data_dir=/nowhere"], "/nowhere"),
    ("analyze_topology", ["--topology_params=[1]"], "must be a JSON object"),
    ("reproduce", ["--paper=liu2020", "--report_only"], "--report_only"),
    ("reproduce", ["--paper=alford2019", "--report_only"], "does not exist"),
])
@pytest.mark.slow
def test_usage_errors_are_one_line_and_exit_2(tmp_path, name, args, match):
  extra = [f"--workdir={tmp_path / 'w'}"] if name in ("train", "reproduce") else []
  out = _binary(name, *args, *extra)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = _our_lines(out.stderr)
  assert lines[0].startswith("error: ") and match in lines[0], out.stderr
  assert "Traceback" not in out.stderr and len(lines) <= 3, out.stderr


@pytest.mark.slow
def test_non_finite_loss_is_one_line_and_exit_1(tmp_path):
  out = _binary("train", f"--workdir={tmp_path}", "--hidden=32", "--epochs=2",
                "--lr=1e12", "--optimizer=sgd", "--schedule=constant",
                "--init=dense_he", "--topology=dense")
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert "error: non-finite training loss" in out.stderr


def _sigint_default():
  # A suite started in the background by a non-interactive shell (`cmd &`,
  # nohup) passes SIGINT down ignored; the user at a terminal has it.
  signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_says_where_the_run_resumes(tmp_path):
  wd = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={wd}", "--hidden=64", "--epochs=500"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      preexec_fn=_sigint_default)
  try:
    metrics = wd / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().strip()):
      time.sleep(0.2)
    assert metrics.read_text().strip(), "no epoch finished in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, err[-2000:]
  assert "Traceback" not in err
  assert "interrupted: epochs 1-" in err and "resume from epoch" in err
  # The checkpoint and the metrics agree: the resume point said is real.
  from snn_jax.training import Checkpointer
  done = len([l for l in metrics.read_text().splitlines() if l.strip()])
  ckpt = Checkpointer(str(wd))
  try:
    assert ckpt.latest_epoch() == done
  finally:
    ckpt.close()
  assert f"resume from epoch {done + 1}" in err


@pytest.mark.parametrize("ignored", [False, True])
def test_checkpoint_block_defers_ctrl_c_unless_it_is_ignored(ignored):
  """Ctrl-C inside the checkpoint block takes effect when the block ends;
  a process that ignores SIGINT keeps ignoring it there."""
  from snn_jax.training.workdir import interrupts_deferred as _interrupts_deferred
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored
                           else signal.default_int_handler)
  reached_end = False
  try:
    try:
      with _interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, inside the block
        reached_end = True
      interrupted = False
    except KeyboardInterrupt:
      interrupted = True
  finally:
    signal.signal(signal.SIGINT, previous)
  assert reached_end and interrupted is not ignored


@pytest.mark.slow
def test_aliases_and_key_flags(tmp_path):
  out = _binary("train", f"--workdir={tmp_path}", "--hidden=16", "--epochs=1",
                "--learning_rate=0.01")
  assert out.returncode == 0, out.stderr[-2000:]
  import json
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["optimizer"]["lr"] == 0.01
  assert "\r" not in out.stdout + out.stderr  # no progress bar into a pipe
  short = _binary("train", "--helpshort")
  assert "--hidden" in short.stdout and "--learning_rate" in short.stdout
  out = _binary("analyze_topology", "--topology=erdos_renyi",
                "--widths=32,16", "--density=0.5", "--params={}",
                f"--output_dir={tmp_path / 'a'}", "--nospectral")
  assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_idx_file_names_itself(tmp_path, rng, damage):
  x = rng.integers(0, 255, (20, 28, 28), dtype=np.uint8)
  y = rng.integers(0, 10, 20, dtype=np.uint8)
  blobs = {"t10k-images-idx3-ubyte.gz":
           b"\0\0\x08\x03" + np.array([20, 28, 28], ">u4").tobytes() + x.tobytes(),
           "t10k-labels-idx1-ubyte.gz":
           b"\0\0\x08\x01" + np.array([20], ">u4").tobytes() + y.tobytes()}
  for name, raw in blobs.items():
    packed = gzip.compress(raw)
    if name.startswith("t10k-images"):
      packed = packed[:len(packed) // 2] if damage == "truncate" else (
          packed[:20] + b"\xff" * 40 + packed[60:])
    (tmp_path / name).write_bytes(packed)
  with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is truncated "
                     "or corrupt"):
    data.load_idx_dir(str(tmp_path), split="test_only")


_KILL_ARGS = ["--hidden=64", "--epochs=6", "--density=0.3"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
  """The metrics rows of a run of ``_KILL_ARGS`` that nothing interrupted."""
  wd = tmp_path_factory.mktemp("ref") / "run"
  ref = _binary("train", f"--workdir={wd}", *_KILL_ARGS)
  assert ref.returncode == 0, ref.stderr[-2000:]
  return _metric_rows(wd)


def _metric_rows(workdir):
  import json
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text(
      ).splitlines() if l.strip()]


def _assert_same_run(got, want):
  assert [r["epoch"] for r in got] == list(range(1, 7))
  for g, w in zip(got, want):
    assert g["train_loss"] == w["train_loss"] and g["test_acc"] == w["test_acc"]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(
    tmp_path, uninterrupted_run):
  """SIGKILL (no handler can run) during training: the rerun resumes from
  the last complete epoch and ends with the same metrics as a run that was
  never interrupted (seeded data order, deterministic kernels)."""
  args = _KILL_ARGS
  wd = tmp_path / "killed"
  metrics = wd / "metrics.jsonl"
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={wd}", *args], stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    proc.kill()
  done = len([l for l in metrics.read_text().splitlines() if l.strip()])
  assert 2 <= done < 6, "the run was not killed mid-way"
  out = _binary("train", f"--workdir={wd}", *args)
  assert out.returncode == 0, out.stderr[-2000:]
  _assert_same_run(_metric_rows(wd), uninterrupted_run)


_KILL_IN_CHECKPOINT = """
import os, runpy, signal, sys
from orbax.checkpoint._src.path import async_path
rename = async_path.rename

async def killing_rename(src, dst):  # the commit of epoch 3's checkpoint
  if os.path.basename(str(dst).rstrip("/")) == "3":
    os.kill(os.getpid(), signal.SIGKILL)
  return await rename(src, dst)

async_path.rename = killing_rename
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_then_resume(tmp_path,
                                                      uninterrupted_run):
  """SIGKILL while orbax writes epoch 3's checkpoint (its files written,
  the directory not yet renamed into place): the rerun resumes from epoch 2
  -- epoch 3's metrics row, already written, is dropped and the epoch
  redone -- and ends equal to a run that was never interrupted."""
  wd = tmp_path / "killed"
  proc = subprocess.run(
      [sys.executable, "-c", _KILL_IN_CHECKPOINT,
       os.path.join(REPO_ROOT, "experiments", "train.py"), f"--workdir={wd}",
       *_KILL_ARGS], capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert [r["epoch"] for r in _metric_rows(wd)] == [1, 2, 3]
  ckpts = sorted(os.listdir(wd / "checkpoints"))
  assert "3" not in ckpts and any(c.startswith("3.") for c in ckpts), ckpts
  out = _binary("train", f"--workdir={wd}", *_KILL_ARGS)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "resuming" in out.stdout and "from epoch 2" in out.stdout
  _assert_same_run(_metric_rows(wd), uninterrupted_run)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.slow
def test_full_disk_is_one_line_and_exit_1(tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / "metrics.csv").symlink_to("/dev/full")  # every write: ENOSPC
  out = _binary("train", f"--workdir={wd}", "--hidden=16", "--epochs=1")
  assert out.returncode == 1
  lines = _our_lines(out.stderr)
  assert len(lines) == 1 and lines[0].startswith("error: cannot write the "
                                                 "metrics"), out.stderr
  assert "No space left on device" in lines[0]


def test_foreign_log_filter_keeps_our_lines():
  """The filter drops only glog-format start-up lines of C++ libraries."""
  stderr = ("WARNING: All log messages before absl::InitializeLog() is called "
            "are written to STDERR\n"
            "I0000 00:00:1796588164.218265   18649 cudart_stub.cc:31] Could not "
            "find cuda drivers on your machine, GPU will not be used.\n"
            "error: bad --hidden\n(run with --help to see the flags)\n")
  assert _our_lines(stderr) == ["error: bad --hidden",
                                "(run with --help to see the flags)"]
  assert _our_lines("Traceback (most recent call last):\nI0 x") == [
      "Traceback (most recent call last):", "I0 x"]
