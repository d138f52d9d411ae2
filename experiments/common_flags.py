"""Training flags shared by train.py, sweep.py, prune.py, evolution.py and
deep_init.py, and the TrainConfig they build (the library never reads
flags).

One mechanism, as the Flax examples have it: ``--config=path`` (a ``.py``
file with ``get_config()``, or a ``.json`` file such as a run's
``config.json``; default ``TrainConfig()``), then dotted overrides of any
leaf, ``--config.model.topology.density=0.05`` (values are JSON, or a bare
string). The short flags people use (``--epochs``, ``--density``, ...) are
aliases of the leaf ``FLAT_NAMES`` maps them to, applied where given,
before the dotted ones. No flag has a default of its own: the config's are
the only defaults (``--helpfull`` shows them)."""

import json
import sys

from absl import app, flags

from snn_jax import data, topology
from snn_jax.nn import INITIALIZERS, MODELS
from snn_jax.ops import IMPLS
from snn_jax.sparse_training import METHODS, REGROW_INITS
from snn_jax.training import FLAT_NAMES, OPTIMIZERS, SCHEDULES, TrainConfig
from snn_jax.training.config import leaf_paths

try:
  from experiments import data_flags, distributed_flags
except ImportError:
  import data_flags
  import distributed_flags

_DATASET = data_flags.define_dataset_flags(default=None)
_DATA_DIR, _TFDS_DATA_DIR, _TFDS_MANUAL_DIR, _TFDS_DOWNLOAD = (
    data_flags.DATA_DIR, data_flags.TFDS_DATA_DIR, data_flags.TFDS_MANUAL_DIR,
    data_flags.TFDS_DOWNLOAD)
_NORMALIZATION = flags.DEFINE_enum(
    "normalization", None, list(data.NORMALIZATIONS),
    "Standardise with one global mean/std, or per feature (SET's choice: "
    "constant pixels become 0).")
_MODEL = flags.DEFINE_enum(
    "model", None, list(MODELS), "mlp, or lenet5 (28x28 images; dense "
    "convolutions, --topology on its fully connected layers 400 -> --hidden "
    "-> classes; LeNet-5's own widths are --hidden=120,84).")
_HIDDEN = flags.DEFINE_list("hidden", None, "Hidden layer widths.")
_TOPOLOGY = flags.DEFINE_enum("topology", None, topology.names(),
                              "Registered topology generator.")
_DENSITY = flags.DEFINE_float("density", None, "Connection density per layer.")
_FAN_IN = flags.DEFINE_integer("fan_in", None, "Fan-in instead of density.")
_BLOCK_SIZE = flags.DEFINE_list("block_size", None,
                                "Block size, one value or one per layer.")
_TOPOLOGY_PARAMS = flags.DEFINE_string(
    "topology_params", None, "JSON generator parameters, e.g. '{\"epsilon\": 20}'.")
_IMPL = flags.DEFINE_enum("impl", None, list(IMPLS), "bsmm implementation.")
_INIT = flags.DEFINE_string(
    "init", None, f"Initialiser: one of {', '.join(sorted(INITIALIZERS))},"
    " truncated_normal:<std> (e.g. truncated_normal:0.04) or normal:<std>.")
_BIAS_INIT = flags.DEFINE_float("bias_init", None, "Starting value of biases.")
_OUTPUT_ACTIVATION = flags.DEFINE_string(
    "output_activation", None, "Activation on the logits too (Alford et al. "
    "2019: relu); default none.")
_ACTIVATION = flags.DEFINE_string(
    "activation", None, "Hidden activation (srelu: learned, SET's Keras code).")
_NORM = flags.DEFINE_enum("norm", None, ["layer", "batch"], "Normalisation.")
_DROPOUT = flags.DEFINE_float("dropout", None, "Dropout rate.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS),
                               "optax optimizer.")
_LR = flags.DEFINE_float("lr", None, "Peak learning rate.")
flags.DEFINE_alias("learning_rate", "lr")
_SCHEDULE = flags.DEFINE_enum("schedule", None, list(SCHEDULES), "LR schedule.")
_WARMUP = flags.DEFINE_integer("warmup_epochs", None, "Warm-up epochs (warmup_cosine).")
_LR_BOUNDARIES = flags.DEFINE_list(
    "lr_boundaries", None, "schedule=piecewise: steps at which the learning "
    "rate changes, e.g. 10000,20000.")
_LR_VALUES = flags.DEFINE_list(
    "lr_values", None, "schedule=piecewise: the learning rate from each "
    "boundary on, e.g. 0.1,0.05 (--lr before the first).")
_MOMENTUM = flags.DEFINE_float("momentum", None, "Momentum (optimizer=momentum).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", None, "Weight decay.")
_DECAY_BIASES = flags.DEFINE_bool(
    "decay_biases", None, "Apply --weight_decay to biases too (--nodecay_biases: "
    "weights only, as an L2 term in the loss).")
_VALIDATION_SPLIT = flags.DEFINE_string(
    "validation_split", None, "Hold out first:N or last:N training examples; "
    "every epoch then also reports validation accuracy.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs.")
_SEED = flags.DEFINE_integer("seed", None, "Seed (topology, init, data order).")
_SPLIT_SEED = flags.DEFINE_integer(
    "split_seed", None, "Seed of the train/held-out split where the data set "
    "is split here (digits, IDX test-set files); default --seed.")
_SNAPSHOTS = flags.DEFINE_bool("snapshot_topologies", None,
                               "Save every epoch's topology (for NNSTD).")
_SNAPSHOT_EPOCHS = flags.DEFINE_list(
    "snapshot_epochs", None, "With --snapshot_topologies: only these epochs "
    "(0 = at initialisation).")
_PROGRESS = flags.DEFINE_bool(
    "progress", None, "Show a progress bar (default: only when stdout is a "
    "terminal, so logs get no carriage-return lines).")
_SPARSE_TRAINING = flags.DEFINE_enum(
    "sparse_training", None, list(METHODS),
    "static topology, SET (Mocanu et al. 2018), RigL (Evci et al. 2020) or "
    "prune (gradual magnitude pruning, Zhu & Gupta 2017: --prune_density, "
    "--prune_begin_step, --prune_end_step, --update_every).")
_ZETA = flags.DEFINE_float("zeta", None, "Fraction of connections rewired per update.")
_UPDATE_EVERY = flags.DEFINE_integer(
    "update_every", None, "Rewire every N optimizer steps; 0 = after every epoch "
    "but the last, after its evaluation (SET's rule).")
_PRUNE_DENSITY = flags.DEFINE_float(
    "prune_density", None, "sparse_training=prune: fraction of each layer's "
    "weights kept at the end.")
_PRUNE_BEGIN = flags.DEFINE_integer("prune_begin_step", None,
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
    "data_parallel", None, "Split every batch over all local (and, with "
    "--coordinator_address, all processes') devices; parameters replicated.")
_SHARD_BLOCKS = flags.DEFINE_bool(
    "shard_blocks", None, "With --data_parallel, store large layers' blocks "
    "(and their optimizer state) split over the devices.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard a workdir that holds a different run.")


_CONFIG = flags.DEFINE_string(
    "config", None, "A config file: .py with get_config() (configs/ holds the "
    "paper setups) or .json (e.g. a run's config.json); default "
    "TrainConfig(). Then --config.<leaf>=<JSON or string> overrides a leaf, "
    "e.g. --config.model.topology.density=0.05.")


def _default_of(path: str):
  value = TrainConfig().to_dict()
  for key in path.split("."):
    value = value[key]
  return value


# --config.<leaf> for every leaf of the config: the one way to set anything.
_DOTTED = {path: flags.DEFINE_string(
    f"config.{path}", None, f"Sets {path} (JSON, or a bare string); default "
    f"{json.dumps(_default_of(path))}.") for path in leaf_paths()}

# The short flags parsed from lists or JSON, and how.
_LIST_PARSERS = {"hidden": int, "lr_boundaries": int, "lr_values": float,
                 "snapshot_epochs": int}


def _progress(config: TrainConfig) -> bool:
  """--progress (or --config.run.progress) as given, else whether stdout
  is a terminal (a display choice, not the run's: logs get no
  carriage-return lines)."""
  if flags.FLAGS["progress"].present or flags.FLAGS["config.run.progress"].present:
    return config.run.progress
  return sys.stdout.isatty()


def _short_flag_value(name: str):
  value = flags.FLAGS[name].value
  if name in _LIST_PARSERS:
    return tuple(_LIST_PARSERS[name](v) for v in value)
  if name == "block_size":
    sizes = [int(b) for b in value]
    return sizes[0] if len(sizes) == 1 else tuple(sizes)
  if name == "topology_params":
    params = json.loads(value)
    if not isinstance(params, dict):
      raise ValueError("--topology_params must be a JSON object")
    return params
  return value


def _dotted_value(path: str, raw: str):
  """``--config.<path>``'s value: JSON, or a bare string; of the kind of
  the leaf's default where it has one (a number for a number, a list for a
  list, true/false for a flag), or null."""
  try:
    value = json.loads(raw)
  except json.JSONDecodeError:
    value = raw
  default = _default_of(path)
  kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,),
           list: (list,), dict: (dict,)}
  want = kinds.get(type(default))
  if want is not None and value is not None and (not isinstance(value, want) or (
      isinstance(value, bool) and bool not in want)):
    raise app.UsageError(
        f"--config.{path}={raw}: expected a {type(default).__name__} like "
        f"its default {json.dumps(default)}")
  return value


def config_from_flags(pruning_during_training: bool = True) -> TrainConfig:
  """The TrainConfig the flags describe: ``--config``'s file (or
  ``TrainConfig()``), then every short flag given (each sets the leaf
  ``FLAT_NAMES`` maps its name to), then every ``--config.<leaf>``.
  prune.py passes ``pruning_during_training=False``: its --prune_density
  is the target of its prune-and-retrain pipeline, not of gradual pruning
  in one run."""
  try:
    base = (TrainConfig() if _CONFIG.value is None
            else TrainConfig.from_file(_CONFIG.value))
  except (ValueError, TypeError, FileNotFoundError, KeyError) as e:
    raise app.UsageError(f"--config={_CONFIG.value}: {e}") from e
  short = {}
  for name in FLAT_NAMES:
    if name in flags.FLAGS and flags.FLAGS[name].present:
      if name == "prune_density" and not pruning_during_training:
        continue
      try:
        short[FLAT_NAMES[name]] = _short_flag_value(name)
      except ValueError as e:
        raise app.UsageError(f"bad --{name}: {e}") from e
  dotted = {path: _dotted_value(path, holder.value)
            for path, holder in _DOTTED.items() if holder.present}
  try:
    config = base.override(short).override(dotted)
  except (ValueError, TypeError, KeyError) as e:
    raise app.UsageError(str(e).strip('"')) from e
  return config.override({"run.progress": _progress(config)})


def maybe_initialize_distributed() -> None:
  """Joins a multi-process job when the flags ask for one
  (``distributed_flags``)."""
  distributed_flags.maybe_initialize()