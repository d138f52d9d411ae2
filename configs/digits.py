"""The embedded default: a 64-256-256-10 Erdős–Rényi MLP at density 0.1 on
the scikit-learn digits bundled with the package (no network), 30 epochs.
It is ``TrainConfig()``; ``experiments/train.py`` uses it when no
``--config`` is given. A starting point to copy.

  python experiments/train.py --config=configs/digits.py --workdir=out/digits
"""

from snn_jax.training import TrainConfig


def get_config() -> TrainConfig:
  return TrainConfig()
