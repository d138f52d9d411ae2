"""End-to-end training at tiny sizes: files, resume, refusal, NaN stop."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from snn_jax import data
from snn_jax.training import TrainConfig, train_and_evaluate
from snn_jax.data import DataConfig
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.sparse_training import SparseTrainingConfig
from snn_jax.training import RunConfig
from tests.conftest import REPO_ROOT, SHARED_MNIST


pytestmark = pytest.mark.standard_promotion


SMALL = dict(hidden=(64,), density=0.3, epochs=2, batch_size=64, progress=False,
             lr=0.05)


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def test_train_writes_everything_and_learns(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat(dict(**{**SMALL, "epochs": 4}, snapshot_topologies=True))
  s = train_and_evaluate(cfg, wd)
  assert s["final_test_acc"] > 0.8  # digits, 4 epochs
  rows = _rows(wd)
  assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
  assert rows[-1]["train_loss"] < rows[0]["train_loss"]
  assert rows[0]["nnz_params"] == s["nnz_params"] < s["dense_params"]
  for name in ("config.json", "metrics.csv", "summary.json", "curves.png"):
    assert os.path.exists(os.path.join(wd, name))
  assert sorted(os.listdir(os.path.join(wd, "topologies"))) == [
      f"epoch_{e:03d}" for e in range(5)]
  assert "digits" in s["data_source"]


@pytest.mark.slow
def test_resume_continues_and_loses_nothing(tmp_path):
  wd = str(tmp_path / "run")
  full = train_and_evaluate(TrainConfig.from_flat({**SMALL, "epochs": 3}), str(tmp_path / "ref"))
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, wd, stop_after_epoch=2)  # as if killed after epoch 2
  assert [r["epoch"] for r in _rows(wd)] == [1, 2]
  resumed = train_and_evaluate(cfg, wd)  # runs only epoch 3
  assert [r["epoch"] for r in _rows(wd)] == [1, 2, 3]
  np.testing.assert_allclose(resumed["final_test_acc"], full["final_test_acc"],
                             atol=1e-6)
  np.testing.assert_allclose(_rows(wd)[-1]["train_loss"],
                             _rows(str(tmp_path / "ref"))[-1]["train_loss"], rtol=1e-5)


@pytest.mark.slow
def test_refuses_other_config_unless_overwrite(tmp_path):
  wd = str(tmp_path / "run")
  train_and_evaluate(TrainConfig.from_flat(dict(**SMALL)), wd)
  with pytest.raises(FileExistsError, match="different config.*density"):
    train_and_evaluate(TrainConfig.from_flat({**SMALL, "density": 0.5}), wd)
  assert len(_rows(wd)) == 2  # nothing lost
  s = train_and_evaluate(TrainConfig.from_flat({**SMALL, "density": 0.5}), wd, overwrite=True)
  assert len(_rows(wd)) == 2 and s["density"] > 0.4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, wd, stop_after_epoch=1)
  good = data.load("digits")
  poisoned = dataclasses.replace(good, x_train=np.full_like(good.x_train, np.nan))
  with pytest.raises(FloatingPointError, match="last good checkpoint: epoch 1"):
    train_and_evaluate(cfg, wd, dataset=poisoned)
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["1"]
  assert [r["epoch"] for r in _rows(wd)] == [1]
  s = train_and_evaluate(cfg, wd, dataset=good)  # continues from epoch 1
  assert [r["epoch"] for r in _rows(wd)] == [1, 2, 3] and s["final_test_acc"] > 0.5


@pytest.mark.parametrize("bad, match", [
    (dict(topology="nope"), "unknown topology"),
    (dict(dataset="imagenet"), "unknown dataset"),
    (dict(optimizer="lbfgs"), "unknown optimizer"),
    (dict(epochs=0), "epochs"),
])
def test_config_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    TrainConfig.from_flat({**SMALL, **bad})


def test_block_size_incompatible_widths(tmp_path):
  with pytest.raises(ValueError, match="not divisible by block_size"):
    train_and_evaluate(TrainConfig.from_flat({**SMALL, "block_size": 16}), str(tmp_path))


def test_radixnet_incompatible_widths(tmp_path):
  with pytest.raises(ValueError, match="multiple of N'"):
    train_and_evaluate(TrainConfig.from_flat(dict(**{**SMALL, "topology": "radixnet",
                                      "density": None,
                                      "topology_params": {"radices": [[8, 8]]}})),
                       str(tmp_path))


@pytest.mark.slow
def test_binary_end_to_end(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={tmp_path}", "--epochs=1", "--hidden=32", "--noprogress",
       "--topology=radixnet", "--density=0.25"],
      capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "final test accuracy" in out.stdout
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train.py"),
       f"--workdir={tmp_path}", "--epochs=1", "--hidden=32", "--density=0.5",
       "--noprogress"], capture_output=True, text=True, timeout=600)
  assert bad.returncode != 0 and "different config" in bad.stderr


@pytest.mark.slow
@pytest.mark.slow
def test_binary_config_file_short_flags_and_dotted_overrides(tmp_path):
  """--config's file, then the short flags, then --config.<leaf>; a run's
  config.json is a config file that continues the run."""
  py = tmp_path / "mine.py"
  py.write_text("from snn_jax.training import TrainConfig\n"
                "def get_config():\n"
                "  return TrainConfig().override({'run.epochs': 5, "
                "'model.hidden': (24,), 'optimizer.lr': 0.01})\n")
  train = os.path.join(REPO_ROOT, "experiments", "train.py")
  run = lambda *a: subprocess.run([sys.executable, train, *a],
                                  capture_output=True, text=True, timeout=600)
  out = run(f"--workdir={tmp_path / 'a'}", f"--config={py}", "--epochs=2",
            "--config.run.epochs=1", "--lr=0.2",
            "--config.model.topology.density=0.3", "--topology=radixnet")
  assert out.returncode == 0, out.stderr[-2000:]
  saved = json.load(open(tmp_path / "a" / "config.json"))
  assert saved["run"]["epochs"] == 1            # dotted beats short
  assert saved["optimizer"]["lr"] == 0.2        # short beats the file
  assert saved["model"]["hidden"] == [24]       # the file beats defaults
  assert saved["model"]["topology"]["name"] == "radixnet"
  assert saved["model"]["topology"]["density"] == 0.3
  again = run(f"--workdir={tmp_path / 'a'}",
              f"--config={tmp_path / 'a' / 'config.json'}",
              "--config.run.epochs=2")
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resuming" in again.stdout
  bad = run(f"--workdir={tmp_path / 'b'}", "--config.run.epochs=abc")
  assert bad.returncode != 0 and "epochs" in bad.stderr
  assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_short_flags_have_no_defaults_of_their_own():
  """The config's defaults are the only ones (the issue of --epochs 30
  against RunConfig's 10)."""
  out = subprocess.run(
      [sys.executable, "-c", "import sys; sys.argv=['x']; "
       "sys.path.insert(0, 'experiments'); import common_flags; "
       "from absl import flags; from snn_jax.training import FLAT_NAMES; "
       "print(sorted(n for n in FLAT_NAMES if n in flags.FLAGS and "
       "flags.FLAGS[n].default is not None))"],
      capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  # Shared with reproduce.py, where they keep their meaning.
  assert out.stdout.strip() == "['data_split', 'tfds_download']"


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/datasets/mnist is not present (user clone)")
@pytest.mark.slow
def test_mnist_idx_sparse_mlp(tmp_path):
  # The test-set split reads the same files whatever else the folder holds.
  cfg = TrainConfig(data=DataConfig(name="mnist", data_dir=SHARED_MNIST, split="test_only"),
                    model=ModelConfig(hidden=(300, 100), topology=TopologyConfig(density=0.1)),
                    run=RunConfig(epochs=2, batch_size=100, progress=False))
  s = train_and_evaluate(cfg, str(tmp_path))
  assert s["final_test_acc"] > 0.85
  assert "seeded 8000/2000" in s["data_source"]
  assert {f["name"] for f in s["data_fingerprint"]["files"]} == {
      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def test_changed_data_is_refused_and_nothing_is_lost(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat(dict(**SMALL))
  first = train_and_evaluate(cfg, wd, dataset=data.load("digits", seed=0))
  with open(os.path.join(wd, "summary.json")) as f:
    stored = f.read()
  other = data.load("digits", seed=1)  # same shapes, another split: other data
  with pytest.raises(FileExistsError, match=(
      f"trained on data {first['data_fingerprint']['id']}, but this data is "
      f"{other.fingerprint['id']}.*split")):
    train_and_evaluate(cfg, wd, dataset=other)
  with pytest.raises(FileExistsError, match="trained on data"):  # more epochs too
    train_and_evaluate(cfg.override({"run.epochs": 3}), wd, dataset=other)
  with open(os.path.join(wd, "summary.json")) as f:
    assert f.read() == stored  # nothing rewritten under the other data
  with open(os.path.join(wd, "config.json")) as f:
    assert json.load(f)["data_fingerprint"] == first["data_fingerprint"]
  s = train_and_evaluate(cfg, wd, dataset=other, overwrite=True)
  assert s["data_fingerprint"]["id"] == other.fingerprint["id"]
  assert [r["epoch"] for r in _rows(wd)] == [1, 2]


def test_finished_run_rerun_returns_its_summary_untouched(tmp_path, capsys):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat(dict(**SMALL))
  first = train_and_evaluate(cfg, wd)
  assert first["total_seconds"] >= first["train_seconds"] > 0
  assert first["resumed_from_epoch"] == 0 and first["epochs_this_process"] == 2
  path = os.path.join(wd, "summary.json")
  mtime = os.stat(path).st_mtime_ns
  again = train_and_evaluate(cfg, wd)
  assert again == json.loads(json.dumps(first))
  assert os.stat(path).st_mtime_ns == mtime
  assert "already complete" in capsys.readouterr().out


def test_resumed_summary_times_only_what_was_measured(tmp_path, capsys):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, wd, stop_after_epoch=1)
  s = train_and_evaluate(cfg, wd)
  assert "resuming" in capsys.readouterr().out
  rows = _rows(wd)
  assert s["resumed_from_epoch"] == 1 and s["epochs_this_process"] == 2
  assert s["total_seconds"] is None  # no process ran the whole run
  np.testing.assert_allclose(s["train_seconds"], sum(r["epoch_s"] for r in rows))
  n_train = len(data.load("digits").y_train)
  per_epoch = (n_train // cfg.run.batch_size) * cfg.run.batch_size
  np.testing.assert_allclose(s["samples_per_second"],
                             3 * per_epoch / s["train_seconds"])


def test_workdir_without_fingerprint_is_not_resumed_blind(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, wd, stop_after_epoch=1)
  path = os.path.join(wd, "config.json")
  with open(path) as f:
    old = json.load(f)
  del old["data_fingerprint"]  # as written before fingerprints existed
  with open(path, "w") as f:
    json.dump(old, f)
  with pytest.raises(FileExistsError, match="before data fingerprints"):
    train_and_evaluate(cfg, wd)
  assert [r["epoch"] for r in _rows(wd)] == [1]


@pytest.mark.slow
def test_split_seed_fixes_the_held_out_set(tmp_path):
  base = dict(hidden=(32,), epochs=1, batch_size=64, progress=False)
  a = train_and_evaluate(TrainConfig.from_flat(dict(**base, seed=1, split_seed=7)), str(tmp_path / "a"))
  b = train_and_evaluate(TrainConfig.from_flat(dict(**base, seed=2, split_seed=7)), str(tmp_path / "b"))
  c = train_and_evaluate(TrainConfig.from_flat(dict(**base, seed=2)), str(tmp_path / "c"))
  assert "(seed 7)" in a["data_source"] and "(seed 7)" in b["data_source"]
  assert "(seed 2)" in c["data_source"]


def _digits_28x28():
  d = data.load("digits", seed=0)
  def up(x):
    img = np.kron(x.reshape(-1, 8, 8), np.ones((1, 3, 3), x.dtype))
    return np.pad(img, ((0, 0), (2, 2), (2, 2))).reshape(len(x), -1)
  return dataclasses.replace(d, x_train=up(d.x_train), x_test=up(d.x_test))


@pytest.mark.slow
def test_lenet5_trains_restores_and_takes_topology_dir(tmp_path):
  from snn_jax import topology
  from snn_jax.training import restore_model
  ds = _digits_28x28()
  cfg = TrainConfig(model=ModelConfig(name="lenet5", hidden=(60, 30), topology=TopologyConfig(name="erdos_renyi", density=0.2)),
                    run=RunConfig(epochs=3, batch_size=64, progress=False))
  s = train_and_evaluate(cfg, str(tmp_path / "a"), dataset=ds)
  assert s["widths"] == [1, 6, 16, 60, 30, 10] and s["final_test_acc"] > 0.5
  conv = 25 * 6 + 150 * 16
  assert s["nnz_params"] < conv + 0.3 * (400 * 60 + 60 * 30 + 30 * 10)
  model = restore_model(str(tmp_path / "a"))
  tops = model.topologies()
  assert [(t.n_in, t.n_out) for t in tops] == [(1, 6), (6, 16), (400, 60),
                                               (60, 30), (30, 10)]
  topology.save_stack(tops, str(tmp_path / "tops"))
  cfg_b = cfg.override({
      "model.topology.directory": str(tmp_path / "tops"), "run.epochs": 1})
  assert train_and_evaluate(cfg_b, str(tmp_path / "b"), dataset=ds)["nnz_params"] \
      == s["nnz_params"]
  with pytest.raises(ValueError, match="shapes"):
    train_and_evaluate(cfg_b.override({"model.hidden": (60, 20)}),
                       str(tmp_path / "c"), dataset=ds)


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.slow
def test_lenet5_rewires_resumes_restores_and_continues(tmp_path, method):
  """LeNet-5's SET/RigL go through the engine from the loop:
  connections move in the fully connected layers at fixed nnz (the
  generated channel graphs are dense: nothing to move there), the moves are counted, and a run killed after epoch 1
  resumes to the uninterrupted run's losses and topology; a finished run
  continues to more epochs on the schedule of its new length."""
  from snn_jax.training import restore_model
  ds = _digits_28x28()
  cfg = TrainConfig(
      model=ModelConfig(name="lenet5", hidden=(40, 20), topology=TopologyConfig(
          name="erdos_renyi", density=0.3)),
      sparse=SparseTrainingConfig(method, zeta=0.3, update_every=4),
      run=RunConfig(epochs=2, batch_size=128, progress=False))
  s = train_and_evaluate(cfg, str(tmp_path / "a"), dataset=ds)
  rows = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
  assert all(r["rewired_blocks"] > 0 for r in rows)
  assert len({r["nnz_params"] for r in rows}) == 1 == len(
      {s["nnz_params"], rows[0]["nnz_params"]})
  start = cfg.model.make_topologies(784, 10, seed=cfg.run.seed)
  end = restore_model(str(tmp_path / "a")).topologies()
  moved = [t0 != t1 for t0, t1 in zip(start, end)]
  assert moved[2] and moved[3], moved  # fully connected layers
  assert [t.nnz for t in start] == [t.nnz for t in end]
  train_and_evaluate(cfg, str(tmp_path / "b"), dataset=ds, stop_after_epoch=1)
  resumed = train_and_evaluate(cfg, str(tmp_path / "b"), dataset=ds)
  assert resumed["resumed_from_epoch"] == 1
  rows_b = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  np.testing.assert_allclose([r["train_loss"] for r in rows_b],
                             [r["train_loss"] for r in rows], rtol=1e-5)
  assert restore_model(str(tmp_path / "b")).topologies() == end
  longer = train_and_evaluate(cfg.override({"run.epochs": 3}),
                              str(tmp_path / "b"), dataset=ds)
  assert longer["resumed_from_epoch"] == 2 and longer["epochs_completed"] == 3
  rows_b = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert rows_b[-1]["rewired_blocks"] > 0


@pytest.mark.parametrize("bad, match", [
    (dict(sparse_training="prune", prune_density=0.1, prune_end_step=9,
          update_every=3), "trains static, set, rigl"),
    (dict(sparse_training="set", update_every=5, data_parallel=True),
     "without data_parallel"),
    (dict(dropout=0.1), "no norm or dropout"),
    (dict(model="resnet"), "unknown model"),
])
def test_lenet5_config_errors(bad, match):
  with pytest.raises(ValueError, match=match):
    TrainConfig.from_flat({"model": "lenet5", **bad})


def test_lenet5_needs_28x28_images(tmp_path):
  with pytest.raises(ValueError, match="28x28"):
    train_and_evaluate(TrainConfig(model=ModelConfig(name="lenet5"),
                                   run=RunConfig(epochs=1, progress=False)),
                       str(tmp_path))


def test_invalid_run_leaves_the_workdir_untouched(tmp_path):
  wd = tmp_path / "run"
  with pytest.raises(ValueError, match="block_size"):
    train_and_evaluate(TrainConfig.from_flat({**SMALL, "block_size": 7}), str(wd))
  assert not wd.exists()  # a corrected rerun into it is not refused
  train_and_evaluate(TrainConfig.from_flat(dict(**SMALL)), str(wd))
  assert (wd / "config.json").exists()


def _events(logdir):
  """(tag, step, value) of every scalar in a TensorBoard event directory
  (TFRecord framing: length, crc, Event proto, crc)."""
  import struct
  from tensorboardX.proto import event_pb2
  out = []
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      raw = f.read()
    pos = 0
    while pos < len(raw):
      (n,) = struct.unpack("<Q", raw[pos:pos + 8])
      ev = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      for v in ev.summary.value:
        out.append((v.tag, ev.step, v.simple_value))
  return out


def test_tensorboard_writers_opened_within_one_second_keep_both_files(tmp_path):
  """tensorboardX names event files by the second and the host: a resumed
  run's writer opened in the same second must not overwrite the first's."""
  from snn_jax.training.metrics import MetricWriter
  wd = str(tmp_path)
  for _ in range(2):
    MetricWriter(wd).close()
  assert len(os.listdir(os.path.join(wd, "tensorboard"))) == 2


def test_tensorboard_events_per_step_and_per_epoch(tmp_path):
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, wd, stop_after_epoch=1)
  train_and_evaluate(cfg, wd)
  ev = _events(os.path.join(wd, "tensorboard"))
  rows = _rows(wd)
  steps_per_epoch = rows[0]["step"]
  step_loss = sorted({s for t, s, _ in ev if t == "train/step_loss"})
  assert step_loss == list(range(1, 3 * steps_per_epoch + 1))
  acc = {s: v for t, s, v in ev if t == "accuracy/test"}
  assert acc == {r["step"]: pytest.approx(r["test_acc"]) for r in rows}
  tags = {t for t, _, _ in ev}
  assert {"loss/train", "train/lr", "topology/nnz_params",
          "epoch/samples_per_s"} <= tags
  assert not any(t.startswith("topology/layer") for t in tags)  # static run


@pytest.mark.slow
def test_dynamic_runs_log_topology_statistics(tmp_path):
  """SET runs add per-layer fan-in spread and starved units to the metrics
  rows and TensorBoard (topology/layer<l>/...), measured on the topology
  after the epoch's rewiring."""
  from snn_jax import topology as topology_lib
  wd = str(tmp_path / "run")
  cfg = TrainConfig.from_flat(dict(**{**SMALL, "hidden": (64, 64), "epochs": 2,
                       "sparse_training": "set", "snapshot_topologies": True}))
  train_and_evaluate(cfg, wd)
  rows = _rows(wd)
  stack = topology_lib.load_stack(os.path.join(wd, "topologies", "epoch_001"))
  for l, t in enumerate(stack):
    assert rows[0][f"layer{l}_fan_in_std"] == pytest.approx(t.fan_in().std())
    assert rows[0][f"layer{l}_zero_fan_in"] == int((t.fan_in() == 0).sum())
  tags = {t for t, _, _ in _events(os.path.join(wd, "tensorboard"))}
  assert {"topology/layer0/fan_in_std", "topology/layer2/zero_fan_in",
          "topology/rewired_blocks"} <= tags


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EACCES"])
@pytest.mark.slow
def test_unwritable_workdir_mid_run_says_what_is_saved_and_resumes(
    tmp_path, monkeypatch, errno_name):
  """A checkpoint write that fails (disk full, file system remounted
  read-only, permissions) stops the run with a message naming the saved
  epochs; once the workdir is writable again the same call resumes and
  ends as an uninterrupted run does."""
  import errno as errno_lib
  from snn_jax.training import Checkpointer, WorkdirWriteError
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 4})
  ref = train_and_evaluate(cfg, str(tmp_path / "ref"))
  wd = str(tmp_path / "run")
  save = Checkpointer.save
  code = getattr(errno_lib, errno_name)

  def failing_save(self, epoch, state):
    if epoch == 3:
      raise OSError(code, os.strerror(code), os.path.join(self.directory, "3"))
    return save(self, epoch, state)
  monkeypatch.setattr(Checkpointer, "save", failing_save)
  with pytest.raises(WorkdirWriteError, match=(
      "could not save epoch 3 .*" + os.strerror(code) + ".*epochs 1-2 are "
      "saved.*resume from epoch 3")) as e:
    train_and_evaluate(cfg, wd)
  assert e.value.errno == code
  # The row of epoch 3 was written before its checkpoint failed; it is
  # dropped and the epoch redone.
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["1", "2"]
  monkeypatch.setattr(Checkpointer, "save", save)
  s = train_and_evaluate(cfg, wd)
  assert [r["epoch"] for r in _rows(wd)] == [1, 2, 3, 4]
  assert s["final_test_acc"] == ref["final_test_acc"]
  assert _rows(wd)[-1]["train_loss"] == _rows(str(tmp_path / "ref"))[-1]["train_loss"]


def test_full_disk_on_the_metrics_loses_nothing(tmp_path):
  """A real ENOSPC from the kernel (the metrics file points at /dev/full):
  the run stops with one clear error before training and the finished
  epochs' rows and checkpoints are untouched."""
  if not os.path.exists("/dev/full"):
    pytest.skip("needs /dev/full (Linux)")
  from snn_jax.training import WorkdirWriteError
  wd = tmp_path / "run"
  cfg = TrainConfig.from_flat({**SMALL, "epochs": 3})
  train_and_evaluate(cfg, str(wd), stop_after_epoch=2)
  rows = (wd / "metrics.jsonl").read_text()
  (wd / "metrics.csv").unlink()
  (wd / "metrics.csv").symlink_to("/dev/full")
  with pytest.raises(WorkdirWriteError, match="cannot write the metrics.*No "
                     "space left on device.*nothing was changed"):
    train_and_evaluate(cfg, str(wd))
  assert (wd / "metrics.jsonl").read_text() == rows
  assert sorted(os.listdir(wd / "checkpoints")) == ["1", "2"]
  (wd / "metrics.csv").unlink()
  s = train_and_evaluate(cfg, str(wd))
  assert s["epochs_completed"] == 3 and s["resumed_from_epoch"] == 2


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes through file permissions; the "
                    "injected EROFS/EACCES test covers the message")
def test_read_only_workdir_is_a_clear_error(tmp_path):
  from snn_jax.training import WorkdirWriteError
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  try:
    with pytest.raises(WorkdirWriteError, match="cannot write to workdir"):
      train_and_evaluate(TrainConfig.from_flat(dict(**SMALL)), str(ro / "run"))
  finally:
    ro.chmod(0o755)


def test_metric_files_are_replaced_whole(tmp_path):
  """atomic_write: an exception inside the block leaves the old file."""
  from snn_jax.utils import atomic_write
  path = tmp_path / "m.jsonl"
  path.write_text("old\n")
  with pytest.raises(RuntimeError):
    with atomic_write(str(path)) as f:
      f.write("half a row")
      raise RuntimeError("killed mid-write")
  assert path.read_text() == "old\n"
  assert os.listdir(tmp_path) == ["m.jsonl"]
  with atomic_write(str(path)) as f:
    f.write("new\n")
  assert path.read_text() == "new\n"
  with pytest.raises(ValueError, match="needs 'w'"):
    with atomic_write(str(path), mode="a"):
      pass


@pytest.mark.parametrize("widths,batch,expected", [
    ((784, 256, 10), 128, 1024),           # small nets: 1024 per batch
    ((784, 65536, 65536, 10), 128, 256),   # 2**24 floats / 65,536 wide
    ((784, 65536, 10), 512, 512),          # never below the training batch
    ((784, 30000, 10), 100, 559),          # Alford's 100x-wide LeNet-300-100
])
def test_eval_batch_bounds_the_widest_activation(widths, batch, expected):
  from types import SimpleNamespace
  from snn_jax.training.loop import eval_batch_size
  model = SimpleNamespace(layers=[SimpleNamespace(n_in=a, n_out=b)
                                  for a, b in zip(widths[:-1], widths[1:])])
  assert eval_batch_size(model, batch) == expected


@pytest.mark.slow
def test_topologies_given_as_objects(tmp_path):
  """train_and_evaluate takes the topologies themselves (no files): they are
  trained, fingerprinted into config.json, a resume with other topologies is
  refused, and restore_model rebuilds the run from its checkpoint."""
  from snn_jax import topology
  from snn_jax.training import restore_model
  cfg = TrainConfig(data=DataConfig(name="digits"),
                    model=ModelConfig(hidden=(48,)),
                    run=RunConfig(epochs=1, batch_size=64, progress=False))
  stack = [topology.make("fixed_fan_in", 64, 48, fan_in=5, seed=3),
           topology.make("erdos_renyi", 48, 10, density=0.6, seed=4)]
  workdir = str(tmp_path / "run")
  s = train_and_evaluate(cfg, workdir, topologies=stack)
  assert s["nnz_params"] == sum(t.nnz for t in stack)
  with open(os.path.join(workdir, "config.json")) as f:
    assert len(json.load(f)["given_topologies"]) == 64
  restored = restore_model(workdir)
  assert restored.topologies() == stack
  other = [topology.make("fixed_fan_in", 64, 48, fan_in=5, seed=9), stack[1]]
  with pytest.raises(FileExistsError, match="given_topologies"):
    train_and_evaluate(cfg.override({"run.epochs": 2}), workdir,
                       topologies=other)
  with pytest.raises(ValueError, match=r"needs \[\(64, 32\), \(32, 10\)\]"):
    train_and_evaluate(cfg.override({"model.hidden": (32,)}),
                       str(tmp_path / "bad"), topologies=stack)
  with pytest.raises(TypeError, match="Topology"):
    train_and_evaluate(cfg, str(tmp_path / "bad"), topologies=["er"])


def _lenet5_rewiring_on_device():
  return TrainConfig(
      model=ModelConfig(name="lenet5", hidden=(40, 20), topology=TopologyConfig(
          name="erdos_renyi", density=0.3)),
      sparse=SparseTrainingConfig("set", zeta=0.3, update_every=4),
      run=RunConfig(epochs=1, batch_size=128, progress=False))


@pytest.mark.parametrize("make", [
    lambda: TrainConfig.from_flat(SMALL),  # static: the cached step
    lambda: TrainConfig.from_flat({**SMALL, "sparse_training": "set",
                                   "zeta": 0.3}),  # epoch end, after eval
    lambda: TrainConfig.from_flat({**SMALL, "sparse_training": "rigl",
                                   "zeta": 0.3, "update_every": 5}),  # mid-epoch
    _lenet5_rewiring_on_device,
], ids=["static", "set_epoch_end", "rigl_mid_epoch", "lenet5_set_on_device"])
@pytest.mark.slow
def test_device_resident_batches_equal_host_batches(tmp_path, monkeypatch,
                                                     make):
  """Holding the training set on the device and gathering each batch in the
  step trains bit for bit as host batching does: same batches, same losses,
  same topology."""
  from snn_jax.training import loop, restore_model
  cfg = make()
  ds = _digits_28x28() if cfg.model.name == "lenet5" else None
  resident = train_and_evaluate(cfg, str(tmp_path / "resident"), dataset=ds)
  monkeypatch.setattr(loop, "DEVICE_RESIDENT_MAX_BYTES", 0)
  host = train_and_evaluate(cfg, str(tmp_path / "host"), dataset=ds)
  keys = ("train_loss", "train_acc", "test_loss", "test_acc", "nnz_params")
  assert ([[r[k] for k in keys] for r in _rows(tmp_path / "resident")]
          == [[r[k] for k in keys] for r in _rows(tmp_path / "host")])
  assert resident["final_test_acc"] == host["final_test_acc"]
  assert (restore_model(str(tmp_path / "resident")).topologies()
          == restore_model(str(tmp_path / "host")).topologies())


@pytest.mark.parametrize("topology", ["erdos_renyi", "dense"])
def test_fit_steps_update_in_place_public_steps_do_not_donate(rng, topology):
  """The steps fit() runs donate the model and optimizer: the arrays a step
  does not change (every layer's index arrays) come back as the same
  buffers, not copies, and the weights are updated in place. The public
  train_step donates nothing: a caller's reference to the old weights
  stays readable."""
  import jax.numpy as jnp
  from flax import nnx
  from snn_jax.training import loop
  cfg = TrainConfig.from_flat({**SMALL, "topology": topology,
                               "density": None if topology == "dense" else 0.3})
  model = loop.build_model(cfg, loop.build_topologies(cfg, 64, 10))
  tx, _ = loop.make_optimizer(cfg, 10)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.asarray(rng.standard_normal((64, 64)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 64), jnp.int32)
  layer = model.layers[0]
  pointer = lambda v: v.get_value().unsafe_buffer_pointer()
  before = {n: pointer(getattr(layer, n)) for n in ("row_idx", "col_idx",
                                                    "values")}
  step = nnx.cached_partial(loop._fit_step, model, opt)
  for _ in range(2):
    jax.block_until_ready(step(x, y))
  assert {n: pointer(getattr(layer, n)) for n in before} == before
  old = layer.values.get_value()
  kept = np.array(old)
  jax.block_until_ready(loop.train_step(model, opt, x, y))
  np.testing.assert_array_equal(np.asarray(old), kept)
  assert not np.array_equal(np.asarray(layer.values.get_value()), kept)
