"""Block-sparse matmul kernels on raw arrays (installed as snn_jax.kernels).

One implementation per module -- ``xla`` (every backend), ``native_cpu``
(C++ through XLA's FFI, CPU; source in ``native/``), ``pallas_gpu``
(Triton), ``mosaic_gpu`` (Mosaic GPU forward, Hopper+), ``pallas_tpu``
(Mosaic), ``reference`` (dense, tests only), ``csr_cpu`` (JAX's
experimental BCSR product: a benchmark baseline, no longer a kernel path)
-- and ``tuning`` (tiles and measured choices), ``deviceless`` (compiling
for a GPU or TPU without one). Nothing here
imports the rest of snn_jax; ``snn_jax.ops.bsmm`` unpacks a BlockCSR and
wires autodiff.
"""

from snn_jax.kernels import csr_cpu, native_cpu, reference, tuning, xla  # noqa: F401
