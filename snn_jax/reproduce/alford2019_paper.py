"""Alford, Robinett, Milechin & Kepner 2019 (arXiv:1810.00299) at the
authors' own scale: their LeNet-300-100 and "LeNet-5" on full MNIST, with
every configuration of their results sheet, side by side with its numbers.

The setup is the one ``../shared/papers/README.md`` reports from the first
author's repository (simonalford42/Kepner-sparse-nn):

* data: MNIST, 55,000 training / 5,000 validation (the first 5,000 training
  images, as TensorFlow's reader holds them out) / 10,000 test images;
  pixels in [-1, 1];
* LeNet-300-100: 784-300-100-10, ReLU, ReLU on the logits too; weights
  truncated normal (std 0.04), biases 0.1; L2 weight decay 0.004 on the
  weights (``wd·‖W‖²/2``); plain SGD, batch 100, learning rate 0.2, 0.1 from
  step 10,000, 0.05 from step 20,000;
* arms (per seed):
  ``dense``; ``one_time_retrained`` (the trained dense net's weights pruned
  once per layer by magnitude, the mask trained from a fresh
  initialisation); ``iterative_pruned`` (gradual cubic-schedule magnitude
  pruning during dense training, per layer, every 200 steps from step 3,000
  to 10,000 -- the accuracy of the pruned net itself) and
  ``iterative_retrained`` (its final mask trained afresh) -- all three
  weight layers carry a mask, at sparsities 50/75/90/95/99 %;
  ``random`` (each of the two hidden layers an independent Bernoulli(r)
  mask, r = 0.01/0.05/0.1/0.5, output dense); ``wider`` (the first hidden
  layer r = 2/10/100 times as wide, both sparse layers at density 1/r, so
  the connections equal the dense net's); ``radixnet`` (N=[[10,10]],
  B=[8,3,1] -- "0.1" -- and B=[8,30,1] -- "10" --, 784 of the 800 input rows
  kept, output dense);
* LeNet-5: the TensorFlow-tutorial network the authors call LeNet-5
  (``snn_jax.nn.AlfordLeNet5``), its sparse layers conv2 and the 2,450 ->
  384 layer, the same arms but RadiX-Net and the 100x-wide net (not in the
  sheet), on a cut-down budget or, with ``lenet5_sheet_config``, on the
  sheet's (``deviations``).

Deviations, all recorded in ``summary.json["deviations"]``: accuracy is
measured after every epoch (550 steps), not every 200 steps, and training
runs 55 epochs = 30,250 steps (the sheet says 10,000-30,000 steps without
saying which run used how many); three seeds where the sheet has one run.

Runs live in ``<workdir>/runs/<lenet300|lenet5>/s<seed>/<arm>``, each a resumable
``train_and_evaluate`` workdir; what a later arm needs from an earlier one
(the dense net's final weights, a gradual run's final mask) is written next
to the run as ``final_weights.npz`` / ``final_topology/`` and is committed
with the results, so a run started again -- in another session, without
the checkpoints -- skips every finished run and resumes the unfinished one
from its last checkpoint if that is still there.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from snn_jax import analysis
from snn_jax import topology as topology_lib
from snn_jax.nn import AlfordLeNet5
from snn_jax.reproduce import _common
from snn_jax.reproduce.alford2019 import trained_row
from snn_jax.studies import Study, run_study
from snn_jax.training import TrainConfig, restore_model

MODELS = ("lenet300", "lenet5")
ARMS = ("dense", "one_time_retrained", "iterative_pruned",
        "iterative_retrained", "random", "wider", "radixnet")
RADIXNETS = {"0.1": (8, 3, 1), "10": (8, 30, 1)}
# Agreement: the paper's single run lies within our 95% interval over
# seeds, widened by this many accuracy points on each side (a single run of
# theirs carries seed noise of its own).
AGREEMENT_MARGIN = 0.005
# ... and "agree" needs our interval to be at most this many points wide;
# a wider one holding the paper's number is "inconclusive".
MAX_INTERVAL_POINTS = 2.0

# The results sheet's single runs (pruning_data.csv via
# ../shared/papers/README.md), test accuracy per (arm, parameter), kept as
# data: data/alford2019_sheet.csv. For LeNet-5 (the TensorFlow-tutorial
# network, AlfordLeNet5) the sheet's two tables give its dense net 99.25 %
# (pruning table) and 99.20 % (topology table); the first is used.
_PARAM_KIND = {"dense": lambda p: None, "radixnet": str, "wider": int}


def read_sheet(model: str) -> dict[tuple[str, Any], float]:
  """``{(arm, parameter): test accuracy}`` of ``model`` from the sheet's
  data file (parameters typed as the arms take them: a sparsity or density
  float, a widening factor int, a RadiX-Net label str, None for dense)."""
  rows = _common.read_data_csv("alford2019_sheet.csv")
  return {(r["arm"], _PARAM_KIND.get(r["arm"], float)(r["param"])):
          float(r["test_acc"]) for r in rows if r["model"] == model}


PAPER_LENET300 = read_sheet("lenet300")
PAPER_LENET5 = read_sheet("lenet5")


def paper_base(base: TrainConfig) -> TrainConfig:
  """The authors' LeNet-300-100 training setup on ``base``'s data source
  (module docstring)."""
  return base.override({
      "data.name": "mnist", "data.split": "canonical",
      "data.normalization": "minus_one_to_one",
      "data.validation": "first:5000", "model.name": "mlp",
      "model.hidden": (300, 100), "model.init": "truncated_normal:0.04",
      "model.bias_init": 0.1, "model.activation": "relu",
      "model.output_activation": "relu", "optimizer.name": "sgd",
      "optimizer.lr": 0.2, "optimizer.schedule": "piecewise",
      "optimizer.lr_boundaries": (10_000, 20_000),
      "optimizer.lr_values": (0.1, 0.05), "optimizer.weight_decay": 0.004,
      "optimizer.decay_biases": False, "run.batch_size": 100, "run.epochs": 55,
      "model.topology.block_size": 1, "run.progress": False})


@dataclasses.dataclass(frozen=True)
class AlfordPaperConfig:
  """Attributes:
    base: the training setup (``paper_base``) with the data source.
    arms: any of ``ARMS``.
    sparsities: pruning targets (fraction of weights removed).
    random_densities: densities of the ``random`` arm.
    widen: width factors of the ``wider`` arm.
    radixnets: labels of ``RADIXNETS`` to run.
    prune_begin_step, prune_end_step, prune_every: the gradual schedule.
    seeds: one dense net (and everything derived from it) per seed.
    models: ``"lenet300"`` and/or ``"lenet5"`` (``AlfordLeNet5``).
    lenet5_epochs, lenet5_seeds, lenet5_prune_*: LeNet-5's budget. The
      defaults are the cut-down one of the first paper-scale runs (8
      epochs, one seed, a compressed pruning schedule: the convolutions
      then cost about 0.17 s per step here); ``lenet5_sheet_config`` is
      the sheet's budget.
    lenet5_more_seeds_sparsities: None, or the sparsities at which LeNet-5
      seeds after the first train the retrained-on-mask configurations
      (``one_time_retrained``, ``iterative_retrained``, with the dense and
      gradual-pruning runs they derive from) and nothing else: the seeds
      go where the sheet shows instability (issue 41).
  """
  base: TrainConfig
  arms: tuple[str, ...] = ARMS
  sparsities: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
  random_densities: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5)
  widen: tuple[int, ...] = (2, 10, 100)
  radixnets: tuple[str, ...] = ("0.1", "10")
  prune_begin_step: int = 3_000
  prune_end_step: int = 10_000
  prune_every: int = 200
  seeds: tuple[int, ...] = (0, 1, 2)
  models: tuple[str, ...] = ("lenet300", "lenet5")
  lenet5_epochs: int = 8
  lenet5_seeds: tuple[int, ...] = (0,)
  lenet5_prune_begin_step: int = 1_000
  lenet5_prune_end_step: int = 3_000
  lenet5_prune_every: int = 100
  lenet5_more_seeds_sparsities: tuple[float, ...] | None = None

  def __post_init__(self):
    bad = [a for a in self.arms if a not in ARMS]
    if bad or not self.arms:
      raise ValueError(f"unknown arms {bad}; known: {ARMS}")
    if not all(0 < s < 1 for s in self.sparsities):
      raise ValueError(f"sparsities must be in (0, 1), got {self.sparsities}")
    if not all(0 < d < 1 for d in self.random_densities):
      raise ValueError(f"random_densities must be in (0, 1), got "
                       f"{self.random_densities}")
    if not all(isinstance(r, int) and r > 1 for r in self.widen):
      raise ValueError(f"widen factors must be integers > 1, got {self.widen}")
    bad = [r for r in self.radixnets if r not in RADIXNETS]
    if bad:
      raise ValueError(f"unknown radixnets {bad}; known: {sorted(RADIXNETS)}")
    if not 0 <= self.prune_begin_step < self.prune_end_step:
      raise ValueError("need 0 <= prune_begin_step < prune_end_step")
    if not self.seeds or not self.lenet5_seeds:
      raise ValueError("need at least one seed per model")
    bad = [m for m in self.models if m not in MODELS]
    if bad or not self.models:
      raise ValueError(f"unknown models {bad}; known: {MODELS}")
    if not 0 <= self.lenet5_prune_begin_step < self.lenet5_prune_end_step:
      raise ValueError("need 0 <= lenet5_prune_begin_step < "
                       "lenet5_prune_end_step")
    if self.lenet5_epochs < 1:
      raise ValueError(f"lenet5_epochs must be >= 1, got {self.lenet5_epochs}")
    more = self.lenet5_more_seeds_sparsities
    if more is not None and not set(more) <= set(self.sparsities):
      raise ValueError(f"lenet5_more_seeds_sparsities {more} must be among "
                       f"the sparsities {self.sparsities}")
    if len(self.base.model.hidden) != 2:
      raise ValueError(f"LeNet-300-100 has two hidden layers, got "
                       f"hidden={self.base.model.hidden}")


def paper_config(base: TrainConfig) -> AlfordPaperConfig:
  """The paper-scale configuration: every LeNet-300-100 configuration of
  the authors' sheet, three seeds (module docstring)."""
  return AlfordPaperConfig(base=paper_base(base))


def lenet5_sheet_config(base: TrainConfig) -> AlfordPaperConfig:
  """LeNet-5 alone at the sheet's budget (issue 41, part 2): 55 epochs =
  30,250 steps as LeNet-300-100 (the sheet: 10,000-30,000; the learning
  rate passes both of its steps), LeNet-300-100's gradual schedule (steps
  3,000-10,000 every 200), every configuration with seed 0, and seeds 1
  and 2 for the retrained-on-mask configurations at 75/90/95/99 %, where
  the sheet's single runs collapse or recover."""
  return dataclasses.replace(
      paper_config(base), models=("lenet5",), lenet5_epochs=55,
      lenet5_seeds=(0, 1, 2), lenet5_prune_begin_step=3_000,
      lenet5_prune_end_step=10_000, lenet5_prune_every=200,
      lenet5_more_seeds_sparsities=(0.75, 0.9, 0.95, 0.99))


def _run_dir(workdir: str, model: str, seed: int, name: str) -> str:
  return os.path.join(workdir, "runs", model, f"s{seed}", name)


def _dense_weights(run_dir: str) -> list[np.ndarray]:
  """The trained dense net's weight matrices, from ``final_weights.npz``
  (written after the first restore, committed with the results)."""
  path = os.path.join(run_dir, "final_weights.npz")
  if not os.path.exists(path):
    weights = restore_model(run_dir).dense_weights()
    np.savez_compressed(path, **weights)
  with np.load(path) as f:
    return [f[f"layer_{l}_weight"] for l in range(len(f.files))
            if f"layer_{l}_weight" in f.files]


def _final_topology(run_dir: str) -> list[topology_lib.Topology]:
  """A finished pruning run's final mask, from ``final_topology/``."""
  tdir = os.path.join(run_dir, "final_topology")
  if not os.path.isdir(tdir):
    topology_lib.save_stack(restore_model(run_dir).topologies(), tdir)
  return topology_lib.load_stack(tdir, chained=False)


def _magnitude_pruned(weights: list[np.ndarray], sparsity: float):
  """One-time pruning: every layer keeps its largest-magnitude weights."""
  return [topology_lib.make("pruned", *w.shape, density=1 - sparsity,
                            weights=w) for w in weights]


def _random_stack(model: str, widths: tuple[int, ...], density: float,
                  seed: int, n_in: int, n_classes: int):
  """Independent Bernoulli(``density``) masks on the model's sparse layers
  (LeNet-300-100: both hidden layers; LeNet-5: conv2 and the fully
  connected layer), the others dense. ``widths`` are the model's
  ``hidden``."""
  if model == "lenet300":
    hidden = topology_lib.make_stack("erdos_renyi", [n_in, *widths],
                                     density=density, seed=seed)
    return _common.with_dense_output(hidden, n_classes)
  shapes = AlfordLeNet5.layer_shapes(widths, n_classes)
  return [topology_lib.make("erdos_renyi", a, b, density=density,
                            seed=seed * 10 + l) if l in (1, 2)
          else topology_lib.make("dense", a, b)
          for l, (a, b) in enumerate(shapes)]


def _radixnet_stack(label: str, n_in: int, n_classes: int):
  """RadiX-Net N=[[10,10]] with dense widths ``RADIXNETS[label]`` (N' =
  100), the first layer truncated to ``n_in`` inputs, output dense."""
  hidden = topology_lib.make_stack(
      "radixnet", [n_in] + [100 * b for b in RADIXNETS[label][1:]],
      radices=[[10, 10]], truncate_inputs=True)
  return _common.with_dense_output(hidden, n_classes)


def _model_base(cfg: AlfordPaperConfig, model: str) -> TrainConfig:
  if model == "lenet300":
    return cfg.base
  return cfg.base.override({
      "model.name": "lenet5_alford", "model.hidden": AlfordLeNet5.WIDTHS,
      "model.init": "sparse_he", "model.bias_init": 0.0,
      "model.output_activation": None, "run.epochs": cfg.lenet5_epochs})


def _seed_rows(cfg: AlfordPaperConfig, model: str, seed: int, workdir: str,
               ds):
  base = _model_base(cfg, model).override({"run.seed": seed})
  n_in, n_classes = ds.input_dim, ds.num_classes
  if model == "lenet300":
    begin, end, every = cfg.prune_begin_step, cfg.prune_end_step, cfg.prune_every
  else:
    begin, end, every = (cfg.lenet5_prune_begin_step, cfg.lenet5_prune_end_step,
                         cfg.lenet5_prune_every)
  arms, sparsities = cfg.arms, cfg.sparsities
  more = cfg.lenet5_more_seeds_sparsities
  if model == "lenet5" and more is not None and seed != _seeds(cfg, model)[0]:
    arms = tuple(a for a in arms if a in _RETRAINED_ON_MASK)
    sparsities = tuple(sp for sp in sparsities if sp in more)
  rows: list[dict[str, Any]] = []

  def record(arm, param, fn):
    row = _common.guarded(fn)
    if row["error"] == _common.NOT_FINISHED:
      return row
    row.update(model=model, arm=arm, param=param, seed=seed)
    rows.append(row)
    print(f"alford2019 paper: {model} seed {seed} {arm} {param}: "
          f"{row.get('final_test_acc', row.get('error'))}", flush=True)
    return row

  def rdir(name):
    return _run_dir(workdir, model, seed, name)

  dense_dir = rdir("dense")
  dense_cfg = base.override({
      "model.topology.name": "dense", "model.topology.density": None})
  needs_dense = any(a in arms for a in ("dense", "one_time_retrained"))

  def dense():
    return trained_row(_common.train(dense_cfg, dense_dir, ds), dense_dir)
  dense_row = record("dense", None, dense) if needs_dense else {}

  def retrain(stack, run_dir):
    s = _common.train_stack(base, stack, run_dir, ds, seed=seed)
    row = trained_row(s, os.path.join(run_dir, "train"))
    row["weight_density"] = s["density"]
    return row

  for sp in sparsities:
    if "one_time_retrained" in arms:
      def one_time(sp=sp):
        if dense_row.get("error") == _common.NOT_FINISHED:
          raise _common.NotFinished(dense_dir)
        if dense_row.get("error"):
          raise ValueError(f"the dense run failed: {dense_row['error']}")
        stack = _magnitude_pruned(_dense_weights(dense_dir), sp)
        return retrain(stack, rdir(f"one_time_s{sp:g}"))
      record("one_time_retrained", sp, one_time)
    if any(a in arms for a in ("iterative_pruned", "iterative_retrained")):
      gdir = rdir(f"gradual_s{sp:g}")
      gcfg = dense_cfg.override({
          "sparse.method": "prune", "sparse.prune_density": 1 - sp,
          "sparse.prune_begin_step": begin, "sparse.prune_end_step": end,
          "sparse.update_every": every})

      def gradual(gcfg=gcfg, gdir=gdir):
        s = _common.train(gcfg, gdir, ds)
        _final_topology(gdir)
        row = trained_row(s, gdir)
        row["weight_density"] = s["density"]
        return row
      pruned_row = record("iterative_pruned", sp, gradual)
      if "iterative_retrained" in arms:
        def gradual_retrained(sp=sp, gdir=gdir, pruned_row=pruned_row):
          if pruned_row.get("error") == _common.NOT_FINISHED:
            raise _common.NotFinished(gdir)
          if pruned_row.get("error"):
            raise ValueError(f"the pruning run failed: {pruned_row['error']}")
          return retrain(_final_topology(gdir), rdir(f"gradual_retrained_s{sp:g}"))
        record("iterative_retrained", sp, gradual_retrained)
  if "random" in arms:
    for d in cfg.random_densities:
      record("random", d, lambda d=d: retrain(
          _random_stack(model, base.model.hidden, d, seed, n_in, n_classes),
          rdir(f"random_d{d:g}")))
  if "wider" in arms:
    for r in _widen(cfg, model):
      wide = (base.model.hidden[0] * r, base.model.hidden[1])
      record("wider", r, lambda r=r, wide=wide: retrain(
          _random_stack(model, wide, 1 / r, seed, n_in, n_classes),
          rdir(f"wider_x{r}")))
  if "radixnet" in arms and model == "lenet300":
    for label in cfg.radixnets:
      record("radixnet", label, lambda label=label: retrain(
          _radixnet_stack(label, n_in, n_classes), rdir(f"radixnet_{label}")))
  return rows


# What LeNet-5 seeds after the first train under
# ``lenet5_more_seeds_sparsities``: the retrained-on-mask arms and the runs
# they derive from.
_RETRAINED_ON_MASK = ("dense", "one_time_retrained", "iterative_pruned",
                      "iterative_retrained")


def _widen(cfg: AlfordPaperConfig, model: str) -> tuple[int, ...]:
  # The sheet has no 100x-wide LeNet-5.
  return tuple(r for r in cfg.widen if model == "lenet300" or r < 100)


def planned_runs(cfg: AlfordPaperConfig) -> int:
  """How many training runs the configuration holds."""
  total = 0
  for model in cfg.models:
    for k, _ in enumerate(_seeds(cfg, model)):
      arms, n_sp = cfg.arms, len(cfg.sparsities)
      if (model == "lenet5" and k > 0
          and cfg.lenet5_more_seeds_sparsities is not None):
        arms = tuple(a for a in arms if a in _RETRAINED_ON_MASK)
        n_sp = len(cfg.lenet5_more_seeds_sparsities)
      total += (any(a in arms for a in ("dense", "one_time_retrained"))
                + n_sp * sum(a in arms for a in (
                    "one_time_retrained", "iterative_retrained"))
                + n_sp * any(a in arms for a in (
                    "iterative_pruned", "iterative_retrained"))
                + len(cfg.random_densities) * ("random" in arms)
                + len(_widen(cfg, model)) * ("wider" in arms)
                + len(cfg.radixnets) * ("radixnet" in arms
                                         and model == "lenet300"))
  return total


def _seeds(cfg: AlfordPaperConfig, model: str) -> tuple[int, ...]:
  return cfg.seeds if model == "lenet300" else cfg.lenet5_seeds


def side_by_side(rows, models: tuple[str, ...] = MODELS
                 ) -> list[dict[str, Any]]:
  """One row per configuration of the authors' sheet: the paper's number,
  ours (mean, seed-bootstrap 95% interval, min and max over seeds), and the
  verdict of ``studies.accuracy_verdict`` (margin ``AGREEMENT_MARGIN``),
  for the sheet's rows of ``models``: a
  collapsed seed makes the row "unstable", an interval wider than
  ``MAX_INTERVAL_POINTS`` that holds the paper's number "inconclusive"."""
  out = []
  sheet = [("lenet300", k, v) for k, v in PAPER_LENET300.items()] + [
      ("lenet5", k, v) for k, v in PAPER_LENET5.items()]
  for model, (arm, param), paper in [e for e in sheet if e[0] in models]:
    vals = [r["final_test_acc"] for r in _common.ok_rows(rows)
            if r.get("model", "lenet300") == model and r["arm"] == arm
            and r["param"] == param]
    v = _common.accuracy_verdict(paper, vals,
                                 margin_points=100 * AGREEMENT_MARGIN,
                                 max_width_points=MAX_INTERVAL_POINTS)
    out.append({"model": model, "arm": arm, "param": param,
                "paper": paper, "mean": v["mean"], "ci_low": v["low"],
                "ci_high": v["high"], "min": v["min"], "max": v["max"],
                "runs": v["n"], "collapsed": v["collapsed"],
                "verdict": v["verdict"]})
  return out


_DEVIATIONS = (
    "test accuracy is measured after every epoch (550 steps), not every 200 "
    "steps; max_drop (instability) is computed on that per-epoch curve",
    "55 epochs = 30,250 SGD steps for every run (the sheet: 10,000-30,000 "
    "steps, not saying which run used how many)",
    "three seeds per configuration where the sheet reports single runs",
    "one gradual-pruning run per target sparsity (the authors' code can also "
    "save the masks of one run as it passes each level)",
)
_LENET5_CUT_DOWN = (
    "LeNet-5 (the TensorFlow-tutorial network): one seed, 8 epochs = 4,400 "
    "steps (the sheet: 10,000-30,000), gradual pruning compressed to steps "
    "1,000-3,000 every 100, so the learning rate stays at 0.2 (its steps at "
    "10,000 and 20,000 are never reached): its dense convolutions cost about "
    "0.1 s per step on this 2-core CPU")
_LENET5 = (
    "LeNet-5: weight decay 0.004 on every weight layer (the sheet gives the "
    "value for LeNet-300-100 only)",
    "LeNet-5 wider nets: conv2's output channels multiplied by r (and with "
    "them the fully connected layer's inputs), both at density 1/r",
)


def deviations(cfg: AlfordPaperConfig) -> list[str]:
  """What differs from the authors' runs, for this configuration."""
  out = list(_DEVIATIONS)
  if "lenet5" not in cfg.models:
    return out
  if cfg.lenet5_epochs == 8 and cfg.lenet5_seeds == (0,):
    out.append(_LENET5_CUT_DOWN)
    out.append(_LENET5[0] + "; its convolutions are trained as dense "
               "convolutions of the masked kernel (the mask is exact, the "
               "kernel is not a sparse one)")
  else:
    steps = cfg.lenet5_epochs * 550
    seeds = (f"seed {cfg.lenet5_seeds[0]} for every configuration, seeds "
             f"{', '.join(map(str, cfg.lenet5_seeds[1:]))} for the "
             "retrained-on-mask configurations at sparsities "
             f"{', '.join(f'{sp:g}' for sp in cfg.lenet5_more_seeds_sparsities)}"
             if cfg.lenet5_more_seeds_sparsities is not None
             and len(cfg.lenet5_seeds) > 1 else
             f"seeds {', '.join(map(str, cfg.lenet5_seeds))}")
    out.append(
        f"LeNet-5: {cfg.lenet5_epochs} epochs = {steps:,} steps, gradual "
        f"pruning over steps {cfg.lenet5_prune_begin_step:,}-"
        f"{cfg.lenet5_prune_end_step:,} every {cfg.lenet5_prune_every}; "
        f"{seeds}; its convolutions run snn_jax.conv.sparse_conv2d "
        "(natively on the stored weights below density 0.6)")
    out.append(_LENET5[0])
  out.append(_LENET5[1])
  return out


def grid_rows(cfg: AlfordPaperConfig, workdir: str, ds
              ) -> list[dict[str, Any]]:
  """Every arm of every model and seed (``workdir/runs/<model>/s<seed>/
  <arm>``; finished runs are skipped): one row per run that has finished
  or failed -- runs not yet finished (a report-only pass) are left out."""
  rows = []
  for model in cfg.models:
    for seed in _seeds(cfg, model):
      rows += _seed_rows(cfg, model, seed, workdir, ds)
  return rows


def statistics(cfg: AlfordPaperConfig, rows, workdir: str) -> dict[str, Any]:
  """The sheet's numbers beside ours (``side_by_side.csv/md``), accuracy
  and the largest drop per configuration, the deviations, the planned run
  count and the training time of the finished runs."""
  table = side_by_side(rows, cfg.models)
  analysis.write_rows(table, workdir, "side_by_side")
  _common.write_markdown_table(
      table, [("model", "network"), ("arm", "configuration"), ("param", "sparsity / density / r"),
              ("paper", "paper %"), ("mean", "ours %"), ("ci_low", "95% low"),
              ("ci_high", "95% high"), ("min", "min %"), ("max", "max %"),
              ("runs", "seeds"), ("verdict", "verdict")],
      os.path.join(workdir, "side_by_side.md"),
      title="Test accuracy (%); paper: single runs from the authors' sheet; "
            "ours: mean, seed-bootstrap 95% interval, min and max over seeds; "
            "verdict: snn_jax.studies.accuracy_verdict (agree within "
            f"{100 * AGREEMENT_MARGIN:g} points, an interval at most "
            f"{MAX_INTERVAL_POINTS:g} points wide, no collapsed seed)")
  stats = _common.group_stats(rows, ("model", "arm", "param"))
  drops = _common.group_stats(rows, ("model", "arm", "param"), "max_drop")
  for s, d in zip(stats, drops):
    s["max_drop_mean"] = d["mean"]
  return {"side_by_side": table, "accuracy": stats,
          "agreement_margin": AGREEMENT_MARGIN,
          "max_interval_points": MAX_INTERVAL_POINTS,
          "deviations": deviations(cfg),
          "runs_planned": planned_runs(cfg),
          "train_seconds_of_finished_runs": float(sum(
              r.get("train_seconds") or 0.0 for r in _common.ok_rows(rows)))}


STUDY = Study(
    name="alford2019 (paper scale)", rows=grid_rows, statistics=statistics,
    schema=("side_by_side", "accuracy", "agreement_margin",
            "max_interval_points", "deviations",
            "runs_planned", "train_seconds_of_finished_runs"),
    rows_file="paper_runs", failed_keys=("model", "arm", "param", "seed"),
    plot=lambda cfg, rows, summary, workdir: plot(summary["side_by_side"],
                                                  workdir))


def run(cfg: AlfordPaperConfig, workdir: str, *, dataset=None,
        report_only: bool = False) -> dict[str, Any]:
  """Runs (or resumes) every arm and seed (:func:`grid_rows`) on the study
  skeleton; writes ``paper_runs.csv/json``, ``side_by_side.csv/md``,
  ``summary.json``, ``provenance.json`` and ``accuracy_vs_sparsity.png``.
  ``report_only`` trains nothing: the files report the runs that have
  finished (``runs_finished`` of ``runs_planned``)."""
  ds = cfg.base.data.with_validation(dataset or cfg.base.load_dataset())
  return run_study(STUDY, cfg, workdir, dataset=ds, report_only=report_only)


def plot(table, out_dir: str) -> None:
  """``accuracy_vs_sparsity.png``: ours (mean, 95% interval) and the
  paper's number per configuration; one row of panels per network
  (pruning, random sparse, wider)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  models = [m for m in MODELS if any(t["model"] == m and t["runs"]
                                     for t in table)]
  if not models:
    return
  groups = (("pruning", ("one_time_retrained", "iterative_pruned",
                         "iterative_retrained"), "sparsity (logit scale)"),
            ("random sparse", ("random",), "density (log scale)"),
            ("wider", ("wider",), "width factor r, density 1/r (log scale)"))
  fig, axes = plt.subplots(len(models), 3, figsize=(16, 4.4 * len(models)),
                           squeeze=False)
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  names = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5 (TF tutorial)"}
  for row, model in enumerate(models):
    mt = [t for t in table if t["model"] == model]
    for ax, (title, arms, xlabel) in zip(axes[row], groups):
      for k, arm in enumerate(arms):
        ss = sorted((t for t in mt if t["arm"] == arm and t["runs"]),
                    key=lambda t: t["param"])
        if not ss:
          continue
        x = [t["param"] for t in ss]
        _common.errorbar_ci(ax, x, ss, marker="o", color=colours[k],
                            label=f"{arm} (ours)", clip=(0.0, 1.0))
        ax.plot(x, [t["paper"] for t in ss], "x--", color=colours[k],
                label=f"{arm} (paper)")
      dense = [t for t in mt if t["arm"] == "dense" and t["runs"]]
      if dense:
        ax.axhspan(max(dense[0]["ci_low"], 0.0), min(dense[0]["ci_high"], 1.0),
                   color="grey", alpha=0.3,
                   label=f"dense (ours, 95% CI, {dense[0]['runs']} seeds)")
        ax.axhline(dense[0]["paper"], color="grey", ls=":", label="dense (paper)")
      for t in mt:
        if title == "random sparse" and t["arm"] == "radixnet" and t["runs"]:
          ax.errorbar([0.1], [t["mean"]], yerr=[[t["mean"] - t["ci_low"]],
                      [t["ci_high"] - t["mean"]]], fmt="s", color="black",
                      label=f"RadiX-Net {t['param']} (ours)")
          ax.plot([0.1], [t["paper"]], "D", mfc="none", color="black",
                  label=f"RadiX-Net {t['param']} (paper)")
      ax.set_xscale("logit" if title == "pruning" else "log")
      ticks = sorted({t["param"] for t in mt if t["arm"] in arms})
      if ticks:
        ax.set_xticks(ticks, [f"{v:.0%}" if title == "pruning" else f"{v:g}"
                              for v in ticks])
        ax.minorticks_off()
      ax.set_title(f"{names[model]}: {title}")
      ax.set_xlabel(xlabel)
      ax.set_ylabel("final test accuracy (mean over seeds)")
      ax.set_ylim(top=1.0)
      ax.legend(fontsize=6)
  fig.suptitle("Bars: 95% seed-bootstrap intervals, drawn clipped to "
               "[0, 1]; side_by_side.md has the numbers and seed counts",
               fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy_vs_sparsity.png"), dpi=110)
  plt.close(fig)
