"""Compiling the accelerator kernels for a GPU or TPU without one.

XLA compiles for a device it only knows by description:
``jax.experimental.topologies.get_topology_desc`` returns devices of a
target -- a TPU slice, or a GPU given by an XLA ``GpuTargetConfig`` -- and a
function traced under ``jax.default_device(device)`` (the way ``bsmm``
learns its target: ``snn_jax.ops.target_device``) lowers and compiles for it
through the real toolchain:

* TPU: Mosaic to TPU machine code, by ``libtpu`` at the version jax's
  ``tpu`` extra pins (``pip install -e '.[accel]'``).
* GPU: XLA:GPU with the Triton pipeline -- Pallas' Triton IR to PTX to a
  cubin by ptxas -- from ``jax-cuda12-plugin`` / ``jax-cuda12-pjrt`` at the
  jaxlib version and ``nvidia-cuda-nvcc-cu12`` (ptxas). No CUDA driver or
  runtime library is needed.

``JAX_PLATFORMS=cpu`` must be set before jax initialises its backends, or
the plugins look for hardware (the test suite's conftest sets it).

What such a compile proves: the toolchain accepts the kernel for that
target -- shapes, layouts, VMEM/shared-memory budgets, register allocation
(``ptxas_report``). What it cannot: numerical results and speed, which wait
for a device (``experiments/bench_kernels.py --suite=gpu`` / ``--suite=tpu``).
A Mosaic GPU kernel is lowered and its pass pipeline runs (it refuses
wgmma for sm_80), but its PTX is not in XLA's dump, so ``ptxas_report``
does not cover it.

The GPU target descriptions ship in ``kernels/targets/`` (their README says
where the numbers come from).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
from typing import Any, Callable

import jax

TARGETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "targets")

# name -> GpuTargetConfig text file in TARGETS_DIR
GPU_TARGETS = {"h100": "h100.txtpb", "a100": "a100.txtpb"}
# name -> get_topology_desc topology name (the smallest slice of each
# generation that libtpu describes without host bounds)
TPU_TARGETS = {"v4": "v4:2x2x1", "v5e": "v5e:2x2", "v5p": "v5p:2x2x1",
               "v6e": "v6e:2x2"}


def unavailable_reason(platform: str) -> str | None:
  """Why deviceless compiles for ``platform`` ("gpu" or "tpu") cannot run
  here, or None when they can."""
  if platform not in ("gpu", "tpu"):
    raise ValueError(f"platform must be 'gpu' or 'tpu', got {platform!r}")
  hint = "install the accelerator toolchains: pip install -e '.[accel]'"
  if platform == "tpu":
    if importlib.util.find_spec("libtpu") is None:
      return f"libtpu is not installed; {hint}"
    return None
  if importlib.util.find_spec("jax_cuda12_plugin") is None:
    return f"jax-cuda12-plugin is not installed; {hint}"
  if ptxas_path() is None:
    return f"ptxas (nvidia-cuda-nvcc-cu12) is not installed; {hint}"
  return None


def _require(platform: str) -> None:
  reason = unavailable_reason(platform)
  if reason:
    raise RuntimeError(reason)


@functools.cache
def gpu_device(name: str) -> jax.Device:
  """The device of a one-GPU deviceless target, ``name`` in GPU_TARGETS."""
  if name not in GPU_TARGETS:
    raise ValueError(f"unknown GPU target {name!r}; one of {sorted(GPU_TARGETS)}")
  _require("gpu")
  from jax.experimental import topologies
  with open(os.path.join(TARGETS_DIR, GPU_TARGETS[name])) as f:
    config = f.read()
  topo = topologies.get_topology_desc("", platform="cuda",
                                      target_config=config, topology="1x1x1")
  return topo.devices[0]


@functools.cache
def tpu_device(name: str) -> jax.Device:
  """The first chip of a deviceless TPU slice, ``name`` in TPU_TARGETS."""
  if name not in TPU_TARGETS:
    raise ValueError(f"unknown TPU target {name!r}; one of {sorted(TPU_TARGETS)}")
  _require("tpu")
  # libtpu lets one process per machine load it (a lock file guarding the
  # chips); a deviceless compile touches no chip, so compiling processes
  # -- e.g. the test suite's workers -- may share the machine. Read when
  # libtpu loads, at the first topology.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  # Nor does it need the Cloud TPU metadata server (no address but the
  # machine's own may be contacted here); jax sets this too when it finds
  # no TPU chip.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  from jax.experimental import topologies
  return topologies.get_topology_desc(TPU_TARGETS[name],
                                      platform="tpu").devices[0]


def compile_for(device: jax.Device, fn: Callable, *args: Any,
                dump_to: str | None = None) -> jax.stages.Compiled:
  """``jax.jit(fn)`` traced on ``args`` (arrays or ``jax.ShapeDtypeStruct``
  pytrees), lowered and compiled for ``device`` with it as the default
  device. ``dump_to``: a folder for XLA's dump of this compile (HLO, and on
  GPU the PTX of every kernel), e.g. for ``ptxas_report``."""
  options = {"xla_dump_to": dump_to} if dump_to else None
  with jax.default_device(device):
    return jax.jit(fn).trace(*args).lower().compile(options)


def kernel_calls(compiled: jax.stages.Compiled) -> list[tuple[str, str]]:
  """``(custom_call_target, kernel name)`` of every Pallas kernel in the
  compiled HLO -- e.g. ``("__gpu$xla.gpu.triton", "bsmm_fwd")`` or
  ``("tpu_custom_call", "bsmm_sddmm_tpu")`` or ``("mosaic_gpu_v2",
  "bsmm_fwd_mosaic")``. An interpret-mode kernel is no custom call, so it
  does not appear."""
  calls = []
  for line in compiled.as_text().splitlines():
    target = re.search(r'custom_call_target="([^"]+)"', line)
    kernel = re.search(r'op_name="[^"]*/(\w+)/(?:pallas_call|mpmd_map)"', line)
    if target and kernel:
      calls.append((target.group(1), kernel.group(1)))
  return calls


@functools.cache
def ptxas_path() -> str | None:
  """The ptxas of ``nvidia-cuda-nvcc-cu12`` (the one the CUDA plugin uses),
  else one on PATH, else None."""
  spec = importlib.util.find_spec("nvidia")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "cuda_nvcc", "bin", "ptxas")
    if os.access(path, os.X_OK):
      return path
  return shutil.which("ptxas")


@dataclasses.dataclass(frozen=True)
class KernelResources:
  """ptxas' resource report for one kernel entry."""
  name: str
  arch: str
  registers: int
  spill_store_bytes: int
  spill_load_bytes: int
  stack_bytes: int


def ptxas_report(dump_dir: str,
                 names: Callable[[str], bool] = lambda n: True
                 ) -> list[KernelResources]:
  """Runs ptxas (``-v``) on every PTX file of an XLA dump (``compile_for(...,
  dump_to=dump_dir)``) at the architecture the PTX targets, and returns the
  resources of each kernel entry whose name ``names`` accepts. These are
  the PTX files XLA handed to ptxas itself, so the registers and spills
  are those of the compiled cubin."""
  ptxas = ptxas_path()
  if ptxas is None:
    raise RuntimeError(unavailable_reason("gpu"))
  files = sorted(glob.glob(os.path.join(dump_dir, "*.ptx")))
  if not files:
    raise ValueError(f"no PTX files in {dump_dir!r}: was it a GPU compile "
                     "with dump_to=?")
  report = []
  for path in files:
    with open(path) as f:
      text = f.read()
    entries = re.findall(r"\.entry\s+(\w+)", text)
    if not any(names(e) for e in entries):  # also XLA's empty PTX modules
      continue
    arch = re.search(r"^\.target\s+(\w+)", text, re.M).group(1)
    proc = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o",
                           os.devnull], capture_output=True, text=True,
                          check=False)
    if proc.returncode:
      raise RuntimeError(f"ptxas failed on {path}: {proc.stderr[-2000:]}")
    # ptxas -v prints, per function: "Function properties for NAME", its
    # stack frame and spill bytes, then "Used N registers".
    for block in re.split(r"Compiling entry function|Function properties for",
                          proc.stderr):
      name = re.match(r"\s*'?(\w+)'?", block)
      regs = re.search(r"Used (\d+) registers", block)
      if not name or not regs or not names(name.group(1)):
        continue
      spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores,"
                         r" (\d+) bytes spill loads", block)
      stack, stores, loads = map(int, spills.groups()) if spills else (0, 0, 0)
      report.append(KernelResources(name.group(1), arch, int(regs.group(1)),
                                    stores, loads, stack))
  return report
