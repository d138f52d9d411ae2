"""Training flags shared by train.py and sweep.py, and the TrainConfig they
build (the library never reads flags)."""

import json
import sys

from absl import app, flags

from snn_jax import data, topology
from snn_jax.nn import INITIALIZERS, MODELS
from snn_jax.ops import IMPLS
from snn_jax.sparse_training import METHODS, REGROW_INITS
from snn_jax.training import FLAT_NAMES, OPTIMIZERS, SCHEDULES, TrainConfig

try:
  from experiments import data_flags, distributed_flags
except ImportError:
  import data_flags
  import distributed_flags

_DATASET = data_flags.define_dataset_flags(default="digits")
_DATA_DIR, _TFDS_DATA_DIR, _TFDS_MANUAL_DIR, _TFDS_DOWNLOAD = (
    data_flags.DATA_DIR, data_flags.TFDS_DATA_DIR, data_flags.TFDS_MANUAL_DIR,
    data_flags.TFDS_DOWNLOAD)
_NORMALIZATION = flags.DEFINE_enum(
    "normalization", "global", list(data.NORMALIZATIONS),
    "Standardise with one global mean/std, or per feature (SET's choice: "
    "constant pixels become 0).")
_MODEL = flags.DEFINE_enum(
    "model", "mlp", list(MODELS), "mlp, or lenet5 (28x28 images; dense "
    "convolutions, --topology on its fully connected layers 400 -> --hidden "
    "-> classes; LeNet-5's own widths are --hidden=120,84).")
_HIDDEN = flags.DEFINE_list("hidden", ["256", "256"], "Hidden layer widths.")
_TOPOLOGY = flags.DEFINE_enum("topology", "erdos_renyi", topology.names(),
                              "Registered topology generator.")
_DENSITY = flags.DEFINE_float("density", 0.1, "Connection density per layer.")
_FAN_IN = flags.DEFINE_integer("fan_in", None, "Fan-in instead of density.")
_BLOCK_SIZE = flags.DEFINE_list("block_size", ["1"],
                                "Block size, one value or one per layer.")
_TOPOLOGY_PARAMS = flags.DEFINE_string(
    "topology_params", "{}", "JSON generator parameters, e.g. '{\"epsilon\": 20}'.")
_IMPL = flags.DEFINE_enum("impl", "auto", list(IMPLS), "bsmm implementation.")
_INIT = flags.DEFINE_string(
    "init", "sparse_he", f"Initialiser: one of {', '.join(sorted(INITIALIZERS))},"
    " or truncated_normal:<std> (e.g. truncated_normal:0.04).")
_BIAS_INIT = flags.DEFINE_float("bias_init", 0.0, "Starting value of biases.")
_OUTPUT_ACTIVATION = flags.DEFINE_string(
    "output_activation", None, "Activation on the logits too (Alford et al. "
    "2019: relu); default none.")
_ACTIVATION = flags.DEFINE_string("activation", "relu", "Hidden activation.")
_NORM = flags.DEFINE_enum("norm", None, ["layer", "batch"], "Normalisation.")
_DROPOUT = flags.DEFINE_float("dropout", 0.0, "Dropout rate.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "momentum", list(OPTIMIZERS), "optax optimizer.")
_LR = flags.DEFINE_float("lr", 0.05, "Peak learning rate.")
flags.DEFINE_alias("learning_rate", "lr")
_SCHEDULE = flags.DEFINE_enum("schedule", "cosine", list(SCHEDULES), "LR schedule.")
_WARMUP = flags.DEFINE_integer("warmup_epochs", 0, "Warm-up epochs (warmup_cosine).")
_LR_BOUNDARIES = flags.DEFINE_list(
    "lr_boundaries", [], "schedule=piecewise: steps at which the learning "
    "rate changes, e.g. 10000,20000.")
_LR_VALUES = flags.DEFINE_list(
    "lr_values", [], "schedule=piecewise: the learning rate from each "
    "boundary on, e.g. 0.1,0.05 (--lr before the first).")
_MOMENTUM = flags.DEFINE_float("momentum", 0.9, "Momentum (optimizer=momentum).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 0.0, "Weight decay.")
_DECAY_BIASES = flags.DEFINE_bool(
    "decay_biases", True, "Apply --weight_decay to biases too (--nodecay_biases: "
    "weights only, as an L2 term in the loss).")
_VALIDATION_SPLIT = flags.DEFINE_string(
    "validation_split", None, "Hold out first:N or last:N training examples; "
    "every epoch then also reports validation accuracy.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Epochs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (topology, init, data order).")
_SPLIT_SEED = flags.DEFINE_integer(
    "split_seed", None, "Seed of the train/held-out split where the data set "
    "is split here (digits, IDX test-set files); default --seed.")
_SNAPSHOTS = flags.DEFINE_bool("snapshot_topologies", False,
                               "Save every epoch's topology (for NNSTD).")
_SNAPSHOT_EPOCHS = flags.DEFINE_list(
    "snapshot_epochs", [], "With --snapshot_topologies: only these epochs "
    "(0 = at initialisation).")
_PROGRESS = flags.DEFINE_bool(
    "progress", True, "Show a progress bar (default: only when stdout is a "
    "terminal, so logs get no carriage-return lines).")
_SPARSE_TRAINING = flags.DEFINE_enum(
    "sparse_training", "static", list(METHODS),
    "static topology, SET (Mocanu et al. 2018), RigL (Evci et al. 2020) or "
    "prune (gradual magnitude pruning, Zhu & Gupta 2017: --prune_density, "
    "--prune_begin_step, --prune_end_step, --update_every).")
_ZETA = flags.DEFINE_float("zeta", 0.3, "Fraction of connections rewired per update.")
_UPDATE_EVERY = flags.DEFINE_integer(
    "update_every", 0, "Rewire every N optimizer steps; 0 = after every epoch "
    "but the last, after its evaluation (SET's rule).")
_PRUNE_DENSITY = flags.DEFINE_float(
    "prune_density", None, "sparse_training=prune: fraction of each layer's "
    "weights kept at the end.")
_PRUNE_BEGIN = flags.DEFINE_integer("prune_begin_step", 0,
                                    "sparse_training=prune: first mask update.")
_PRUNE_END = flags.DEFINE_integer("prune_end_step", None,
                                  "sparse_training=prune: last mask update.")
_REGROW_INIT = flags.DEFINE_enum(
    "regrow_init", None, list(REGROW_INITS),
    "Value of regrown weights (default: SET set_normal, RigL zero).")
_TOPOLOGY_DIR = flags.DEFINE_string(
    "topology_dir", None, "Use the saved topology stack in this directory "
    "(layer_<l>.npz, e.g. prune.py's pruned_topology/) instead of generating.")
_INIT_WEIGHTS = flags.DEFINE_string(
    "init_weights", None, "Start from these dense weights (.npz of "
    "layer_<l>_weight/_bias, e.g. prune.py's init_weights.npz for rewinding).")
_DATA_PARALLEL = flags.DEFINE_bool(
    "data_parallel", False, "Split every batch over all local (and, with "
    "--coordinator_address, all processes') devices; parameters replicated.")
_SHARD_BLOCKS = flags.DEFINE_bool(
    "shard_blocks", False, "With --data_parallel, store large layers' blocks "
    "(and their optimizer state) split over the devices.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard a workdir that holds a different run.")


def _progress() -> bool:
  """--progress as given, else whether stdout is a terminal."""
  if flags.FLAGS["progress"].present:
    return _PROGRESS.value
  return sys.stdout.isatty()


def config_from_flags(pruning_during_training: bool = True) -> TrainConfig:
  """The TrainConfig the flags describe: every training flag sets the
  config leaf ``FLAT_NAMES`` maps its name to (the one place flags meet the
  config). prune.py passes ``pruning_during_training=False``: its
  --prune_density is the target of its prune-and-retrain pipeline, not of
  gradual pruning in one run."""
  try:
    params = json.loads(_TOPOLOGY_PARAMS.value)
    hidden = tuple(int(h) for h in _HIDDEN.value)
    bs = [int(b) for b in _BLOCK_SIZE.value]
    boundaries = tuple(int(b) for b in _LR_BOUNDARIES.value)
    lr_values = tuple(float(v) for v in _LR_VALUES.value)
    snapshot_epochs = tuple(int(e) for e in _SNAPSHOT_EPOCHS.value)
  except ValueError as e:
    raise app.UsageError(f"bad --hidden, --block_size, --topology_params, "
                         f"--lr_boundaries, --lr_values or --snapshot_epochs: {e}")
  if not isinstance(params, dict):
    raise app.UsageError("--topology_params must be a JSON object")
  values = {name: flags.FLAGS[name].value for name in FLAT_NAMES
            if name in flags.FLAGS}
  values.update(
      hidden=hidden, block_size=bs[0] if len(bs) == 1 else tuple(bs),
      topology_params=params, lr_boundaries=boundaries, lr_values=lr_values,
      snapshot_epochs=snapshot_epochs, progress=_progress(),
      data_split=data_flags.DATA_SPLIT.value)
  if not pruning_during_training:
    values["prune_density"] = None
  # --density's default applies to families sized by a density: not to
  # dense, nor where --fan_in or SET's epsilon size the layers.
  if not flags.FLAGS["density"].present and (
      _TOPOLOGY.value == "dense" or _FAN_IN.value is not None
      or "epsilon" in params):
    values["density"] = None
  try:
    return TrainConfig.from_flat(values)
  except (ValueError, TypeError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e


def maybe_initialize_distributed() -> None:
  """Joins a multi-process job when the flags ask for one
  (``distributed_flags``)."""
  distributed_flags.maybe_initialize()