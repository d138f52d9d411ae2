"""SET as its authors ran it: named training settings for a ``TrainConfig``.

SET (Mocanu et al., Nature Communications 2018) has two public reference
implementations in dcmocanu/sparse-evolutionary-artificial-neural-networks
that differ in ways that decide results (how many connections survive,
how fast a network learns). Each is a :class:`SetVariant` here: the dotted
overrides (``TrainConfig.override``) that make a run follow that code, split
into what every arm of a comparison shares (dense and static baselines
train the same network the same way) and what only the evolving arm
changes. The sparse rules themselves (SET's drop and random regrowth) are
:mod:`snn_jax.sparse_training`'s ``set`` method in both::

  from snn_jax.training import TrainConfig, set_variants
  config = set_variants.KERAS_MASK.apply(TrainConfig(), evolving=True)

:data:`OUR_SETTING` is the setting the project used before these variants
existed (the committed "our SET setting" runs), kept for their ablation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from snn_jax.training.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class SetVariant:
  """A named SET setting.

  Attributes:
    name: how studies and results call it.
    source: the code it follows (repository path), and what it was checked
      against.
    shared: overrides for every arm (dense, static and SET alike).
    evolving: overrides for the SET arm only (the rewiring and what the
      reference code does at its epoch boundary).
    differences: where this setting knowingly differs from the code it
      follows (written to the studies' ``choices``).
  """
  name: str
  source: str
  shared: Mapping[str, Any]
  evolving: Mapping[str, Any]
  differences: tuple[str, ...] = ()

  def overrides(self, *, evolving: bool) -> dict[str, Any]:
    """The dotted overrides of an arm (``evolving``: the SET arm)."""
    return {**self.shared, **(self.evolving if evolving else {})}

  def apply(self, config: TrainConfig, *, evolving: bool) -> TrainConfig:
    """``config`` with this variant's overrides for one arm. The evolving
    arm becomes ``sparse.method="set"``; the others keep their method."""
    return config.override(self.overrides(evolving=evolving))

  def describe(self) -> list[str]:
    """Lines for a study's ``choices``."""
    return ([f"SET variant {self.name!r}: {self.source}",
             "every arm: " + ", ".join(f"{k}={v}" for k, v in
                                      self.shared.items()),
             "SET arm only: " + ", ".join(f"{k}={v}" for k, v in
                                         self.evolving.items())]
            + [f"differs from that code: {d}" for d in self.differences])


KERAS_MASK = SetVariant(
    name="keras_mask",
    source=("SET-MLP-Keras-Weights-Mask/set_mlp_keras_cifar10.py (SReLU) and "
            "SET-MLP-MPI/models/set_mlp_keras_fashionmnist.py (ReLU): a dense "
            "Keras kernel under a 0/1 mask; the code behind Liu et al. 2020's "
            "Figure-4 topologies and logs"),
    shared={
        # Dense(...) with glorot_uniform kernels and zero biases, masked.
        "model.init": "dense_glorot_uniform", "model.bias_init": 0.0,
        "model.activation": "srelu", "model.dropout": 0.3,
        "model.norm": None, "model.dense_output": True,
        # optimizers.SGD(lr=0.01, momentum=0.9): heavy ball, no decay.
        "optimizer.name": "momentum", "optimizer.lr": 0.01,
        "optimizer.momentum": 0.9, "optimizer.nesterov": False,
        "optimizer.schedule": "constant", "optimizer.weight_decay": 0.0,
        "run.batch_size": 100, "data.normalization": "per_feature",
    },
    evolving={
        "sparse.method": "set", "sparse.zeta": 0.3, "sparse.update_every": 0,
        # rewireMask: the kept weights are multiplied by the core mask and
        # the new positions join the mask at exactly 0.
        "sparse.regrow_init": "zero",
        # After each epoch's rewiring the model and SGD are rebuilt.
        "optimizer.restart_every_epoch": True,
    },
    differences=(
        "the mask applies from the first step (Keras' kernel constraint "
        "masks after each update, so its first step sees the dense glorot "
        "kernel)",
        "connections whose weight is exactly 0 at a rewiring are kept "
        "(rewireMask recomputes the mask from the weights, losing them); "
        "ties at the drop threshold go to the lower index",
        "the dense and static arms restart nothing (their Keras files "
        "compile once), as here"))

TRULY_SPARSE = SetVariant(
    name="truly_sparse",
    source=("SET-MLP-Sparse-Python-Data-Structures/"
            "set_mlp_sparse_data_structures.py: SciPy sparse matrices, every "
            "layer sparse"),
    shared={
        # createSparseWeights: randn() / 10 at each connection; zero biases.
        "model.init": "normal:0.1", "model.bias_init": 0.0,
        "model.activation": "relu", "model.dropout": 0.0, "model.norm": None,
        "model.dense_output": False,
        # fit(learning_rate=0.01, momentum=0.9, weight_decay=0.0002).
        "optimizer.name": "momentum", "optimizer.lr": 0.01,
        "optimizer.momentum": 0.9, "optimizer.nesterov": False,
        "optimizer.schedule": "constant", "optimizer.weight_decay": 2e-4,
        "data.normalization": "per_feature",
    },
    evolving={
        "sparse.method": "set", "sparse.zeta": 0.3, "sparse.update_every": 0,
        # weightsEvolution: new weights randn() / 10.
        "sparse.regrow_init": "set_normal",
    },
    differences=(
        "weight decay is added to the gradient (a step's decay lr x 2e-4); "
        "the reference code subtracts 2e-4 x w per step, unscaled",
        "cross-entropy on softmax logits; the reference example trains MSE "
        "on sigmoid outputs, batch 2"))

# The project's SET setting before the variants (liu2020.SET_SETTING):
# Nesterov momentum, weight decay 2e-4, regrowth N(0, 0.1²), sparse-He
# initialisation, batch 128; the ablation beside the faithful reruns.
OUR_SETTING = SetVariant(
    name="ours",
    source="snn_jax's SET setting of the first paper-scale runs "
           "(reproduce.liu2020.SET_SETTING)",
    # The rest as TrainConfig's defaults: Nesterov, sparse-He, batch 128.
    shared={"optimizer.name": "momentum", "optimizer.momentum": 0.9,
            "optimizer.lr": 0.01, "optimizer.schedule": "constant",
            "optimizer.weight_decay": 2e-4,
            "data.normalization": "per_feature"},
    evolving={"sparse.method": "set", "sparse.zeta": 0.3,
              "sparse.update_every": 0})

SET_VARIANTS: dict[str, SetVariant] = {
    v.name: v for v in (KERAS_MASK, TRULY_SPARSE, OUR_SETTING)}


def get(name: str) -> SetVariant:
  """The variant called ``name`` (``SET_VARIANTS``)."""
  try:
    return SET_VARIANTS[name]
  except KeyError:
    raise ValueError(f"unknown SET variant {name!r}; known: "
                     f"{sorted(SET_VARIANTS)}") from None
