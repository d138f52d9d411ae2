"""Packaging for snn_jax.

The kernel sources live in the top-level ``kernels/`` folder of the repository
but are installed as the subpackage ``snn_jax.kernels`` (``package_dir``), so
no top-level package called ``kernels`` lands in site-packages.
"""
from setuptools import find_packages, setup

setup(
    name="snn_jax",
    version="0.1.0",
    description="A priori sparse neural networks in JAX: topologies, "
    "block-sparse kernels, Flax modules and experiments.",
    python_requires=">=3.11",
    packages=find_packages(include=["snn_jax", "snn_jax.*"])
    + ["snn_jax.kernels"],
    package_dir={"snn_jax.kernels": "kernels"},
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2",
        "orbax-checkpoint>=0.11",
        "numpy>=1.26",
        "scipy>=1.11",
        "absl-py>=2.0",
        "matplotlib>=3.8",
        "scikit-learn>=1.3",
        "tqdm>=4.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3",
            "hypothesis>=6",
            "chex>=0.1.87",
            "nbformat>=5",
            "nbclient>=0.9",
            "ipykernel>=6",
        ],
        "data": ["tensorflow-datasets>=4.9", "tensorflow-cpu>=2.16"],
    },
)
