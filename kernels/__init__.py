"""Block-sparse matmul kernels on raw arrays (installed as snn_jax.kernels).

One implementation per module -- ``xla`` (every backend), ``pallas_gpu``
(Triton), ``pallas_tpu`` (Mosaic), ``reference`` (dense, tests only) -- and
``tuning`` (measured choices). Nothing here imports the rest of snn_jax;
``snn_jax.ops.bsmm`` unpacks a BlockCSR and wires autodiff.
"""

from snn_jax.kernels import reference, tuning, xla  # noqa: F401
