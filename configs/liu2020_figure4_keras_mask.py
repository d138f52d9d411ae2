"""One network of Liu et al. 2020's Figure-4 experiment, trained as the
authors' Keras-mask SET code trains it (``training.set_variants.KERAS_MASK``):
Fashion-MNIST with the last 12,000 training images held out, MLP
784-784-784-784-10 with its hidden layers Erdős–Rényi at density 0.6 % and
the output layer dense, SReLU, dropout 0.3, SGD lr 0.01 momentum 0.9
restarted every epoch, regrowth at zero, 200 epochs, batch 100.

  python experiments/train.py --config=configs/liu2020_figure4_keras_mask.py \\
      --config.data.data_dir=../shared/datasets/fashion_mnist --workdir=out/w0

The study itself (ten networks 1 % apart, NNSTD between them) is
``experiments/reproduce.py --paper=liu2020 --scale=paper --part=figure4
--set='set_variant="keras_mask"'``.
"""

from snn_jax.reproduce import liu2020_paper
from snn_jax.training import TrainConfig, set_variants


def get_config() -> TrainConfig:
  base = liu2020_paper.paper_base(TrainConfig()).override({
      "model.topology.name": "erdos_renyi", "model.topology.density": 0.006,
      "run.progress": True})
  return set_variants.KERAS_MASK.apply(base, evolving=True)
