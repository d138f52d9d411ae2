"""Packaging for snn_jax.

The kernel sources live in the top-level ``kernels/`` folder of the repository
but are installed as the subpackage ``snn_jax.kernels`` (``package_dir``), so
no top-level package called ``kernels`` lands in site-packages.

The native CPU kernels (``kernels/native/bsmm_cpu.cc``, XLA FFI) are compiled
into ``snn_jax.kernels._native_cpu`` with the machine's C++ compiler against
the FFI headers that jaxlib ships (a build requirement, pyproject.toml). The
extension is optional: without a compiler, or if the build fails, the
package installs without it and ``snn_jax.kernels.native_cpu.AVAILABLE`` is
False. Flags: ``-O3 -march=native`` (vectorised for this machine's CPU; a
build is not portable to older CPUs), replaced by ``SNN_JAX_NATIVE_CFLAGS``
when set. ``SNN_JAX_SKIP_NATIVE=1`` skips the extension (e.g. on a GPU
machine, where the accelerator suite does not use it).
"""
import os
import shlex

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class _BuildExt(build_ext):
  """Finds the FFI headers (jaxlib) at build time, then builds as usual;
  a failure leaves the package without the optional extension."""

  def build_extensions(self):
    try:
      import jaxlib
      include = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    except ImportError:
      include = None
    skip = os.environ.get("SNN_JAX_SKIP_NATIVE") == "1"
    for ext in self.extensions:
      if include and os.path.isdir(include) and not skip:
        ext.include_dirs.append(include)
      else:
        ext.sources = []  # nothing to compile against: skip it
    self.extensions = [e for e in self.extensions if e.sources]
    if self.extensions:
      super().build_extensions()
    else:
      print("snn_jax: the native CPU kernels are not built ("
            + ("SNN_JAX_SKIP_NATIVE=1" if skip else "jaxlib's FFI headers not "
               "found") + "; the XLA kernels are used)")


_CFLAGS = shlex.split(os.environ.get(
    "SNN_JAX_NATIVE_CFLAGS",
    "-O3 -march=native -std=c++17 -fno-math-errno -fvisibility=hidden"))

_NATIVE = Extension(
    "snn_jax.kernels._native_cpu",
    sources=["kernels/native/bsmm_cpu.cc"],
    language="c++",
    extra_compile_args=_CFLAGS,
    extra_link_args=["-pthread"],
    optional=True,
)

setup(
    name="snn_jax",
    version="0.1.0",
    description="A priori sparse neural networks in JAX: topologies, "
    "block-sparse kernels, Flax modules and experiments.",
    python_requires=">=3.11",
    packages=find_packages(include=["snn_jax", "snn_jax.*"])
    + ["snn_jax.kernels"],
    package_dir={"snn_jax.kernels": "kernels"},
    package_data={"snn_jax.kernels": ["targets/*.txtpb", "targets/README.md"],
                  "snn_jax.reproduce": ["data/*.csv"]},
    ext_modules=[_NATIVE],
    cmdclass={"build_ext": _BuildExt},
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
        "tensorboardX>=2.6",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.2",
            "hypothesis>=6",
            "chex>=0.1.87",
            "nbformat>=5",
            "nbclient>=0.9",
            "ipykernel>=6",
        ],
        "data": ["tensorflow-datasets>=4.9", "tensorflow-cpu>=2.16"],
        # Deviceless GPU/TPU compiles (snn_jax.kernels.deviceless): libtpu
        # and the CUDA plugin pinned by jax's own extras to the installed
        # jaxlib ("cuda12-local" leaves out the CUDA runtime libraries,
        # which a compile does not need), and ptxas.
        "accel": ["jax[tpu,cuda12-local]", "nvidia-cuda-nvcc-cu12>=12.6.85"],
        # Benchmark-only peers (benchmarks/peers.py), never needed by the
        # package: the torch release the committed measurements used (its
        # CPU build: PyTorch's CPU wheel index, where PyPI's is CUDA's).
        "peers": ["torch==2.13.0"],
    },
)
