"""Block-sparse matmul kernels on raw arrays (installed as snn_jax.kernels).

One implementation per module; nothing here imports the rest of snn_jax.
"""
