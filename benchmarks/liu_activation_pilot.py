"""Which activation of SET's Keras-mask code to use for Liu et al. 2020's
Figure-4 rerun: network w0 of the study, trained with the ``keras_mask``
variant for a few epochs under SReLU (SET's CIFAR file and paper) and ReLU
(its Fashion-MNIST file), validation accuracy per epoch beside the points
the authors' logs give (about 65 % at epoch 3, 77.1-79.5 % at epoch 10;
``../shared/papers/README.md``).

  python benchmarks/liu_activation_pilot.py \
      --data_dir=../shared/datasets/fashion_mnist \
      --out=results/liu2020/keras_mask_activation_pilot.json
"""

import json
import os
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from snn_jax.data import DataConfig  # noqa: E402
from snn_jax.reproduce import liu2020_paper  # noqa: E402
from snn_jax.training import TrainConfig, train_and_evaluate  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX files.")
_OUT = flags.DEFINE_string("out", None, "JSON file written.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs per activation.")
flags.mark_flags_as_required(["data_dir", "out"])

# The authors' logs: epoch -> validation accuracy (range over their nets).
AUTHORS = {3: (0.65, 0.65), 10: (0.771, 0.795)}


def main(argv):
  del argv
  base = TrainConfig(data=DataConfig(name="fashion_mnist",
                                     data_dir=_DATA_DIR.value))
  cfg = liu2020_paper.LiuFigure4Config(base=liu2020_paper.paper_base(base),
                                       set_variant="keras_mask")
  out = {"network": "w0", "variant": "keras_mask", "authors": AUTHORS,
         "curves": {}}
  for activation in ("srelu", "relu"):
    tb = liu2020_paper.training_base(cfg).override({
        "model.activation": activation, "run.epochs": _EPOCHS.value,
        "run.snapshot_topologies": False, "run.snapshot_epochs": ()})
    ds = tb.data.with_validation(tb.load_dataset()).flattened()
    stack = liu2020_paper.initial_topologies(cfg, ds.input_dim,
                                             ds.num_classes)[0]
    with tempfile.TemporaryDirectory() as d:
      train_and_evaluate(tb, d, dataset=ds, topologies=stack)
      with open(os.path.join(d, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    out["curves"][activation] = [r["val_acc"] for r in rows]
    out["data_fingerprint"] = ds.fingerprint
  # Distance to the authors' points: mean absolute gap (points) at the
  # epochs they report, to the nearest end of their range.
  gaps = {}
  for activation, curve in out["curves"].items():
    g = [max(lo - curve[e - 1], curve[e - 1] - hi, 0.0)
         for e, (lo, hi) in AUTHORS.items() if e <= len(curve)]
    gaps[activation] = 100 * sum(g) / len(g)
  out["mean_gap_points"] = gaps
  out["closer"] = min(gaps, key=gaps.get)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps({k: out[k] for k in ("mean_gap_points", "closer")}))


if __name__ == "__main__":
  app.run(main)
