"""snn_jax: a priori sparse neural networks in JAX.

Data flows one way: ``topology`` (graphs, NumPy) -> ``sparse.BlockCSR`` ->
``kernels`` / ``ops.bsmm`` -> ``nn`` modules -> ``training`` -> results.
Submodules are imported on demand; this file never imports TensorFlow.
"""

__version__ = "0.1.0"
