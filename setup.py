"""Packaging for snn_jax.

The kernel sources live in the top-level ``kernels/`` folder of the repository
but are installed as the subpackage ``snn_jax.kernels`` (``package_dir``), so
no top-level package called ``kernels`` lands in site-packages.

The native CPU kernels (``kernels/native/bsmm_cpu.cc`` and ``conv_cpu.cc``,
sharing ``cpu_runtime.h``; XLA FFI) are compiled
once per CPU target, each into its own module
``snn_jax.kernels._native_cpu_<target>``, with the machine's C++ compiler
against the FFI headers that jaxlib ships (a build requirement,
pyproject.toml); ``snn_jax.kernels.native_cpu`` loads, at import, the best
one this CPU runs (``SNN_JAX_NATIVE_TARGET`` forces one). Targets on x86-64:
``x86_64_v4`` (AVX-512), ``x86_64_v3`` (AVX2, FMA), ``x86_64_v2`` (SSE4.2,
the baseline); on aarch64: ``armv8`` (NEON); elsewhere ``generic`` (the
compiler's default). ``SNN_JAX_NATIVE_TARGETS`` (comma-separated) picks a
subset, and ``native`` there builds one module for this machine's CPU only
(``-march=native``: not portable). A wheel built with the defaults runs on
any CPU of its architecture. The extensions are optional: without a
compiler, or if a build fails, the package installs without them and
``snn_jax.kernels.native_cpu.AVAILABLE`` is False. Common flags: ``-O3
-std=c++17 -fno-math-errno -fvisibility=hidden`` (no ``-ffast-math``: NaN
and Inf propagate), replaced by ``SNN_JAX_NATIVE_CFLAGS`` when set; each
target adds its ``-march``. ``SNN_JAX_SKIP_NATIVE=1`` skips the extensions
(e.g. on a GPU machine, where the accelerator suite does not use them).
"""
import os
import platform
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
      # One after the other: every target compiles the same source files,
      # and each needs its own object (build_extension below).
      self.parallel = None
      super().build_extensions()
    else:
      print("snn_jax: the native CPU kernels are not built ("
            + ("SNN_JAX_SKIP_NATIVE=1" if skip else "jaxlib's FFI headers not "
               "found") + "; the XLA kernels are used)")

  def build_extension(self, ext):
    # Every target compiles the same sources: without a folder
    # of its own per target, each would overwrite the previous target's
    # object, and a module could be linked from another target's code.
    base = self.build_temp
    self.build_temp = os.path.join(base, ext.name.rsplit(".", 1)[-1])
    try:
      super().build_extension(ext)
    finally:
      self.build_temp = base


_CFLAGS = shlex.split(os.environ.get(
    "SNN_JAX_NATIVE_CFLAGS",
    "-O3 -std=c++17 -fno-math-errno -fvisibility=hidden"))

# Native-kernel targets by machine: module suffix -> -march. The order is
# kernels/native_cpu.py's preference (best first).
_TARGETS = {
    "x86_64": {"x86_64_v4": "x86-64-v4", "x86_64_v3": "x86-64-v3",
               "x86_64_v2": "x86-64-v2"},
    "aarch64": {"armv8": "armv8-a"},
}
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine().lower())


def _native_targets() -> dict[str, str | None]:
  known = _TARGETS.get(_MACHINE, {"generic": None})
  asked = os.environ.get("SNN_JAX_NATIVE_TARGETS")
  if not asked:
    return dict(known)
  chosen = {}
  for name in (a.strip() for a in asked.split(",") if a.strip()):
    if name == "native":
      chosen[name] = "native"
    elif name in known:
      chosen[name] = known[name]
    else:
      raise SystemExit(
          f"SNN_JAX_NATIVE_TARGETS: {name!r} is not a target on {_MACHINE} "
          f"(targets: {', '.join(known)}, or native)")
  return chosen


def _native_extension(name: str, march: str | None) -> Extension:
  flags = list(_CFLAGS) + ([f"-march={march}"] if march else [])
  return Extension(
      f"snn_jax.kernels._native_cpu_{name}",
      sources=["kernels/native/bsmm_cpu.cc", "kernels/native/conv_cpu.cc"],
      depends=["kernels/native/cpu_runtime.h"],
      language="c++",
      define_macros=[("SNN_MODULE", f"_native_cpu_{name}")],
      extra_compile_args=flags,
      extra_link_args=["-pthread"],
      optional=True,
  )


_NATIVE = [_native_extension(n, m) for n, m in _native_targets().items()]

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
    ext_modules=_NATIVE,
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
            # JAX's compilation cache locks its files with it; the suite
            # shares one cache between processes (tests/conftest.py).
            "filelock>=3",
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
