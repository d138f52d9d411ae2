"""Flax NNX modules on block-sparse kernels, and sparsity-aware initialisers."""

from snn_jax.nn._init import (INITIALIZERS, PARAMETRISED_INITIALIZERS, dense_glorot_uniform, dense_he, effective_fan_in,
                              get_initializer, live_units, neurofabric,
                              sparse_glorot, sparse_he, truncated_normal)
from snn_jax.nn._activations import LEARNED_ACTIVATIONS, SReLU
from snn_jax.nn._conv import LeNet5, SparseConv2D, expand_channel_topology
from snn_jax.nn._alford_lenet5 import AlfordLeNet5, local_response_norm
from snn_jax.nn._layers import (SparseDense, SparseMLP, TopologyVar,
                                get_activation, load_dense_weights,
                                save_dense_weights)
from snn_jax.nn._config import MODELS, ModelConfig

__all__ = ["AlfordLeNet5", "LEARNED_ACTIVATIONS", "SReLU", "MODELS", "ModelConfig", "local_response_norm", "INITIALIZERS", "PARAMETRISED_INITIALIZERS", "LeNet5", "SparseConv2D", "expand_channel_topology", "SparseDense", "SparseMLP", "TopologyVar",
           "dense_glorot_uniform", "dense_he", "effective_fan_in", "get_activation", "get_initializer",
           "live_units", "load_dense_weights", "neurofabric", "save_dense_weights",
           "sparse_glorot", "sparse_he", "truncated_normal"]
