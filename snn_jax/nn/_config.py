"""``ModelConfig``: which network a run trains, as data."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

from flax import nnx

from snn_jax.topology import Topology, TopologyConfig, make
from snn_jax.nn._activations import LEARNED_ACTIVATIONS
from snn_jax.nn._alford_lenet5 import AlfordLeNet5
from snn_jax.nn._conv import LeNet5
from snn_jax.nn._init import get_initializer
from snn_jax.nn._layers import SparseMLP, get_activation, load_dense_weights
from snn_jax.utils.config import ConfigPart

MODELS = ("mlp", "lenet5", "lenet5_alford")


def _default_topology() -> TopologyConfig:
  return TopologyConfig("erdos_renyi", density=0.1)


@dataclasses.dataclass(frozen=True)
class ModelConfig(ConfigPart):
  """A network: its kind, widths, topology and initialisation.

  Attributes:
    name: ``"mlp"`` (``SparseMLP``), ``"lenet5"`` (``LeNet5``: dense
      convolutions, ``topology`` on the fully connected layers
      ``400 -> *hidden -> classes``) or ``"lenet5_alford"``
      (``AlfordLeNet5``, the TensorFlow-tutorial LeNet-5 of Alford et al.
      2019: ``hidden = (conv2 channels, fully connected width)``, its conv2
      and fully connected layer from ``topology``, the others dense).
    hidden: hidden widths.
    topology: the sparse layers' topology (``TopologyConfig``).
    impl: ``bsmm`` implementation (``snn_jax.ops.IMPLS``).
    conv_impl: the LeNet-5 convolutions' implementation
      (``snn_jax.conv.CONV_IMPLS``; ``"auto"``: natively on a CPU below
      the measured density, XLA's dense convolution otherwise).
    init: initialiser name (``snn_jax.nn.get_initializer``), e.g.
      ``"sparse_he"`` or ``"truncated_normal:0.04"``; ``bias_init`` the
      biases' start value.
    activation: hidden activation (``snn_jax.nn.get_activation``'s names, or
      ``"srelu"`` for ``mlp``: a learned :class:`~snn_jax.nn.SReLU` per
      hidden layer); ``output_activation`` on the logits too (Alford et al.
      2019: relu).
    norm: ``"layer"``, ``"batch"`` or None; ``dropout`` its rate.
    init_weights: start from these dense weights (``save_dense_weights``'
      ``.npz``, e.g. prune.py's ``init_weights.npz`` for rewinding).
    dense_output: ``mlp`` only: the last layer (to the logits) dense,
      whatever ``topology`` makes the others (SET's Keras-mask code, and
      Liu et al. 2020's Figure-4 networks, keep their output layer dense).
  """
  name: str = "mlp"
  hidden: tuple[int, ...] = (256, 256)
  topology: TopologyConfig = dataclasses.field(default_factory=_default_topology)
  impl: str = "auto"
  conv_impl: str = "auto"
  init: str = "sparse_he"
  bias_init: float = 0.0
  activation: str = "relu"
  output_activation: str | None = None
  norm: str | None = None
  dropout: float = 0.0
  init_weights: str | None = None
  dense_output: bool = False

  def __post_init__(self):
    if self.name not in MODELS:
      raise ValueError(f"unknown model {self.name!r}; known: {MODELS}")
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    if isinstance(self.topology, Mapping):
      object.__setattr__(self, "topology",
                         TopologyConfig.from_dict(self.topology))
    if not isinstance(self.topology, TopologyConfig):
      raise TypeError(f"topology must be a TopologyConfig, got "
                      f"{type(self.topology).__name__}")
    if any(h < 1 for h in self.hidden):
      raise ValueError(f"hidden widths must be positive, got {self.hidden}")
    from snn_jax.ops import IMPLS
    if self.impl not in IMPLS:
      raise ValueError(f"unknown impl {self.impl!r}; known: {IMPLS}")
    from snn_jax.conv import CONV_IMPLS
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"unknown conv_impl {self.conv_impl!r}; known: "
                       f"{CONV_IMPLS}")
    if self.conv_impl != "auto" and self.name == "mlp":
      raise ValueError("conv_impl is for the LeNet-5 models; model 'mlp' has "
                       "no convolutions")
    get_initializer(self.init)  # unknown or malformed names raise
    if self.activation in LEARNED_ACTIVATIONS:
      if self.name != "mlp":
        raise ValueError(f"activation {self.activation!r} (learned, one "
                         f"module per hidden layer) is for model 'mlp', not "
                         f"{self.name!r}")
    else:
      get_activation(self.activation)
    if self.output_activation is not None:
      get_activation(self.output_activation)
    if self.norm not in (None, "layer", "batch"):
      raise ValueError(f"norm must be 'layer', 'batch' or None, got "
                       f"{self.norm!r}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
    if self.dense_output and self.name != "mlp":
      raise ValueError(f"dense_output is for model 'mlp'; {self.name!r} "
                       "chooses its dense layers itself")
    if self.dense_output and self.topology.directory is not None:
      raise ValueError("dense_output makes the last layer; a topology "
                       "directory gives every layer: unset one of them")
    if self.name == "lenet5":
      bad = [n for n, b in (("norm", self.norm is not None),
                            ("dropout", self.dropout != 0.0)) if b]
      if bad:
        raise ValueError(f"model lenet5 has no norm or dropout; unset {bad}")
    if self.name == "lenet5_alford":
      bad = [n for n, b in (
          ("norm", self.norm is not None), ("dropout", self.dropout != 0.0),
          ("init", self.init != "sparse_he"), ("bias_init", self.bias_init),
          ("activation", self.activation != "relu"),
          ("output_activation", self.output_activation is not None)) if b]
      if bad:
        raise ValueError(
            f"model lenet5_alford has the authors' fixed activations and "
            f"initialisation, without norm or dropout; unset {bad}")
      if len(self.hidden) != 2:
        raise ValueError(f"model lenet5_alford takes hidden=(conv2 channels, "
                         f"fully connected width), e.g. (50, 384); got "
                         f"{self.hidden}")

  def layer_shapes(self, input_dim: int,
                   num_classes: int) -> list[tuple[int, int]]:
    """``(n_in, n_out)`` of every weight layer on data of ``input_dim``
    features and ``num_classes`` classes."""
    if self.name != "mlp" and input_dim != 28 * 28:
      raise ValueError(f"model {self.name} needs 28x28 single-channel images "
                       f"(mnist, fashion_mnist); the data has {input_dim} "
                       "features")
    if self.name == "lenet5_alford":
      return AlfordLeNet5.layer_shapes(self.hidden, num_classes)
    lenet = self.name == "lenet5"
    widths = [LeNet5.FC_INPUTS if lenet else input_dim, *self.hidden,
              num_classes]
    return (list(LeNet5.CONV_CHANNELS) if lenet else []) + list(
        zip(widths[:-1], widths[1:]))

  def make_topologies(self, input_dim: int, num_classes: int, *,
                      seed: int) -> list[Topology]:
    """Every weight layer's topology: generated from ``topology`` (seeded by
    ``seed``) or loaded from its ``directory`` and checked against the
    model's layer shapes. LeNet-5's convolutions (channel graphs) are dense
    when generated; Alford's LeNet-5 has conv1 and the logits dense."""
    want = self.layer_shapes(input_dim, num_classes)
    spec = self.topology
    if spec.directory is not None:
      stack = spec.make_stack([], seed=seed, chained=self.name == "mlp")
      got = [(t.n_in, t.n_out) for t in stack]
      if got != want:
        raise ValueError(f"topology directory {spec.directory!r} holds layers "
                         f"of shapes {got}, but model {self.name} with "
                         f"hidden={self.hidden} on this data needs {want}")
      return stack
    if self.name == "lenet5_alford":
      return [spec.make(a, b, seed=seed + l) if l in (1, 2) else
              make("dense", a, b) for l, (a, b) in enumerate(want)]
    convs = [make("dense", a, b) for a, b in LeNet5.CONV_CHANNELS] \
        if self.name == "lenet5" else []
    fc = want[len(convs):]
    widths = [fc[0][0]] + [b for _, b in fc]
    if self.dense_output:
      hidden = spec.make_stack(widths[:-1], seed=seed) if len(fc) > 1 else []
      return hidden + [make("dense", *fc[-1])]
    return convs + spec.make_stack(widths, seed=seed)

  def check_topologies(self, topologies: Sequence[Topology], input_dim: int,
                       num_classes: int) -> list[Topology]:
    """``topologies`` given as objects, checked against the layer shapes;
    returned as a list."""
    stack = list(topologies)
    if not stack or not all(isinstance(t, Topology) for t in stack):
      raise TypeError("topologies must be a non-empty sequence of "
                      "snn_jax.topology.Topology")
    if self.topology.directory is not None:
      raise ValueError("give the topologies either as objects or as the "
                       "topology config's directory, not both")
    got = [(t.n_in, t.n_out) for t in stack]
    want = self.layer_shapes(input_dim, num_classes)
    if got != want:
      raise ValueError(
          f"the given topologies have layer shapes {got}, but model "
          f"{self.name!r} with hidden={self.hidden} on this data needs "
          f"{want}: set the config's hidden widths to the topologies'")
    return stack

  def build(self, topologies: Sequence[Topology],
            rngs: nnx.Rngs) -> SparseMLP | LeNet5 | AlfordLeNet5:
    """The module on these topologies (``init_weights`` loaded when set)."""
    if self.name == "lenet5_alford":
      model = AlfordLeNet5(topologies, impl=self.impl,
                           conv_impl=self.conv_impl, rngs=rngs)
    elif self.name == "lenet5":
      model = LeNet5(topologies, init=self.init, impl=self.impl,
                     conv_impl=self.conv_impl,
                     activation=self.activation, rngs=rngs)
    else:
      model = SparseMLP(topologies, activation=self.activation, norm=self.norm,
                        dropout=self.dropout, init=self.init,
                        bias_init=self.bias_init,
                        output_activation=self.output_activation,
                        impl=self.impl, rngs=rngs)
    if self.init_weights is not None:
      # Checked here, where it is read, not when the config is made.
      if not os.path.exists(self.init_weights):
        raise FileNotFoundError(f"init_weights {self.init_weights!r} does not "
                                "exist")
      load_dense_weights(model, self.init_weights)
    return model



