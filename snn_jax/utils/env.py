"""What a result was measured on (device and library versions), and the
device a program is compiled for (:func:`target_device`)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

import jax


def _cpu() -> tuple[str, str]:
  """The CPU's model name and its widest x86 vector extension (avx512f,
  avx2, ...), from /proc/cpuinfo; ("", "") where that is not readable. CPU
  timings from different machines do not compare, and the native kernels
  compile for the machine's widest vectors."""
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return "", ""
  model = flags = ""
  for line in text.splitlines():
    key, _, value = line.partition(":")
    if key.strip() == "model name" and not model:
      model = value.strip()
    if key.strip() == "flags" and not flags:
      flags = value
  present = set(flags.split())
  simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in present), "")
  return model, simd


def device_info() -> dict[str, str]:
  d = jax.devices()[0]
  model, simd = _cpu()
  return {"platform": d.platform, "device_kind": d.device_kind,
          "device_count": str(jax.device_count()),
          "cpu_count": str(os.cpu_count()), "machine": platform.machine(),
          "cpu_model": model, "cpu_simd": simd}


def _git_sha() -> str:
  """The checkout's commit, with ``+dirty`` when tracked files differ from
  it ("" outside a git checkout)."""
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    run = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True,
                                    text=True, timeout=10).stdout.strip()
    sha = run("rev-parse", "--short", "HEAD")
    if sha and run("status", "--porcelain", "--untracked-files=no"):
      sha += "+dirty"
    return sha
  except (OSError, subprocess.SubprocessError):
    return ""


def versions() -> dict[str, str]:
  import importlib.metadata as md
  out = {"python": platform.python_version(),
         "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "git_sha": _git_sha()}
  for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "snn_jax"):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = ""
  return out


def target_device() -> jax.Device:
  """The device ``ops.bsmm`` and ``conv.sparse_conv2d`` compile for:
  ``jax.default_device`` when set (a device, or a platform name such as
  ``"gpu"``), else ``jax.devices()[0]``.

  Its ``platform`` decides what ``impl="auto"`` and ``"pallas"`` mean and
  whether Pallas kernels run in interpret mode; its ``device_kind`` picks
  the accelerator tiles (``kernels.tuning``). A deviceless compile names
  its target the same way -- ``with jax.default_device(h100):
  jax.jit(f).trace(...).lower().compile()``, with ``h100`` a device of
  ``jax.experimental.topologies.get_topology_desc`` (see
  ``snn_jax.kernels.deviceless``) -- so it compiles the kernels and tiles
  that card would run. ``jax_default_device`` is part of jit's cache key,
  so a trace made for one target is never reused for another.
  """
  default = jax.config.jax_default_device
  if default is None:
    return jax.devices()[0]
  if isinstance(default, str):
    return jax.devices(default)[0]
  return default
