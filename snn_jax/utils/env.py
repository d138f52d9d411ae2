"""What a result was measured on: device and library versions."""

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
