r"""Train a sparse MLP: flags -> TrainConfig -> snn_jax.training.

Embedded default (no network; ~96% test accuracy on the 360 held-out
digits, about 9 s in all on a 2-core CPU -- README's table has the
measurement):

  python experiments/train.py --workdir=out/digits

MNIST from IDX files (canonical 60,000/10,000 split when the folder holds
the training files), 784-1000-1000-1000-10 at 95% sparsity (about 2.5
minutes on 2 cores; ~97.6% test accuracy):

  python experiments/train.py --dataset=mnist --data_dir=../shared/datasets/mnist \
      --hidden=1000,1000,1000 --density=0.05 --epochs=20 --workdir=out/mnist

TFDS (after ``pip install -e '.[data]'``): ``--dataset=fashion_mnist
--tfds_data_dir=...`` (add ``--tfds_download`` to fetch). A killed run
restarts from its last completed epoch when started again with the same
flags; ``--overwrite`` discards a workdir holding a different run.
"""

import os
import sys

from absl import app, flags, logging
import jax

try:
  from experiments import cli
except ImportError:  # run as a script: experiments/ is on sys.path
  import cli

from snn_jax import data
from snn_jax.training import WorkdirWriteError, train_and_evaluate

try:  # defines the training flags
  from experiments import common_flags
except ImportError:  # run as a script: experiments/ is on sys.path
  import common_flags

flags.mark_flag_as_required("workdir")
flags.adopt_module_key_flags(common_flags)  # --helpshort lists them
flags.adopt_module_key_flags(common_flags.distributed_flags)


def resume_hint(workdir: str) -> str:
  """Where a run interrupted in ``workdir`` will resume."""
  done = 0
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      done = sum(1 for line in f if line.strip())
  if done:
    return (f"epochs 1-{done} are checkpointed in {workdir}; run the same "
            f"command again to resume from epoch {done + 1}")
  return (f"no epoch had completed, nothing was checkpointed in {workdir}; "
          "the same command starts the run again")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  workdir = common_flags._WORKDIR.value
  try:
    common_flags.maybe_initialize_distributed()
    config = common_flags.config_from_flags()
    summary = train_and_evaluate(config, workdir,
                                 overwrite=common_flags._OVERWRITE.value)
  except WorkdirWriteError as e:  # the message says what was saved
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except (ValueError, FileExistsError, FileNotFoundError,
          data.DatasetUnavailableError) as e:
    raise app.UsageError(str(e)) from None
  except FloatingPointError as e:  # the message says what was kept
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    raise cli.Interrupted(resume_hint(workdir)) from None
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    # A peer process is gone (its collectives fail). Exit at once: JAX's
    # shutdown barrier would wait for the dead peer and then abort.
    first = str(e).strip().splitlines()[0][:300]
    print(f"error: process {jax.process_index()} of {jax.process_count()}: "
          f"a collective failed, so another process has failed or was killed "
          f"({first}); stop every process and start them all again to "
          f"resume: {resume_hint(workdir)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)
  print(f"final test accuracy {summary['final_test_acc']:.4f} (best "
        f"{summary['best_test_acc']:.4f}), {summary['nnz_params']:,} weights of "
        f"{summary['dense_params']:,} dense, {summary['train_seconds']:.1f} s "
        f"({summary['samples_per_second']:,.0f} samples/s on "
        f"{summary['devices']} device(s)); "
        f"data: {summary['data_source']}")


if __name__ == "__main__":
  cli.run(main)
