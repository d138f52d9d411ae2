"""Alford et al. 2019's LeNet-300-100 training setup, as the first author's
code gives it (``reproduce.alford2019_paper.paper_base``): MNIST 55,000 /
5,000 / 10,000 with pixels in [-1, 1], truncated-normal init (std 0.04),
biases 0.1, ReLU on the logits too, SGD lr 0.2 / 0.1 / 0.05 at steps 10,000
/ 20,000, weight decay 0.004 on the weights, batch 100, 55 epochs; dense
here (``--config.model.topology.name=erdos_renyi
--config.model.topology.density=0.1`` for a random sparse one).

  python experiments/train.py --config=configs/alford2019_lenet300.py \\
      --config.data.data_dir=../shared/datasets/mnist --workdir=out/lenet300
"""

from snn_jax.reproduce import alford2019_paper
from snn_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return alford2019_paper.paper_base(TrainConfig()).override({
      "model.topology.name": "dense", "run.progress": True})
