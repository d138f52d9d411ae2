"""SET-MLP 784-1000-1000-1000-10 at epsilon 20 as SET's Keras-mask code
trains it (``set_mlp_keras_fashionmnist.py``; ``training.set_variants.
KERAS_MASK``): the SET arm of Liu et al. 2020's "sparse beats dense"
comparison, 200 epochs on the canonical 60,000 / 10,000 split.

  python experiments/train.py --config=configs/set_mlp_keras_mask.py \\
      --config.data.data_dir=../shared/datasets/fashion_mnist --workdir=out/set

``--config.sparse.method=static`` gives the static arm on the same kind of
graph (the study, ``--part=sparse_vs_dense``, shares one graph between
them); ``--config.model.topology.name=dense`` the dense arm (add
``--config.optimizer.restart_every_epoch=false``: the authors' dense file
compiles its optimizer once).
"""

from snn_jax.training import TrainConfig, set_variants


def get_config() -> TrainConfig:
  base = TrainConfig().override({
      "data.name": "fashion_mnist", "data.split": "canonical",
      "model.hidden": (1000, 1000, 1000),
      "model.topology.name": "erdos_renyi",
      "model.topology.params": {"epsilon": 20, "cap_density": True},
      "run.epochs": 200})
  return set_variants.KERAS_MASK.apply(base, evolving=True)
