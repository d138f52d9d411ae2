"""Sparse bipartite topologies between consecutive layers (NumPy only).

Every generator is reachable by name: ``make(name, n_in, n_out, ...)`` for one
layer, ``make_stack(name, widths, ...)`` for an MLP, ``names()`` to list them.
See each generator's docstring (``help(snn_jax.topology.spec(name).fn)``) for
its parameters and the paper it comes from.
"""

from snn_jax.topology._registry import (GeneratorSpec, make, make_stack,
                                        names, register, spec)
from snn_jax.topology._topology import Topology, load_stack, save_stack
from snn_jax.topology._config import TopologyConfig

# Importing the generator modules registers them.
from snn_jax.topology import _random as _random  # noqa: F401  isort: skip
from snn_jax.topology import _expander as _expander  # noqa: F401  isort: skip
from snn_jax.topology import _radixnet as _radixnet  # noqa: F401  isort: skip
from snn_jax.topology import _structured as _structured  # noqa: F401  isort: skip
from snn_jax.topology import _pruned as _pruned  # noqa: F401  isort: skip
from snn_jax.topology._random import perturbed, set_epsilon_density
from snn_jax.topology._expander import projective_plane_incidence

__all__ = ["GeneratorSpec", "Topology", "TopologyConfig", "make", "make_stack", "names",
           "perturbed", "register", "spec", "load_stack", "save_stack", "set_epsilon_density",
           "projective_plane_incidence"]
