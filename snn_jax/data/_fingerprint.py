"""Data fingerprints: what exactly a result was computed from.

A fingerprint is a JSON-able dict recorded in ``config.json``,
``summary.json`` and ``provenance.json``:

* ``files``: every file read, as ``{"name", "bytes", "sha256"}`` (the sha256
  of the file as stored, e.g. of the ``.gz``);
* ``content_sha256``: for data that did not come from files (the embedded
  digits, TFDS, arrays built in a notebook), a sha256 over the raw arrays'
  dtypes, shapes and bytes;
* ``split``: how train and held-out sets were formed (``how``, and the
  ``train`` / ``test`` sizes);
* ``normalization``;
* ``id``: the first 16 hex digits of the sha256 of all of the above --
  two runs saw the same data exactly when their ids are equal.

A workdir whose recorded id differs from the data at hand is refused
(``snn_jax.training.train_and_evaluate``), so a result is never reported
under data it was not computed from.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def file_record(path: str) -> dict[str, Any]:
  """``{"name", "bytes", "sha256"}`` of one file (read in 1 MiB chunks)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK):
      h.update(chunk)
  return {"name": os.path.basename(path), "bytes": os.path.getsize(path),
          "sha256": h.hexdigest()}


def arrays_sha256(*arrays: np.ndarray) -> str:
  """sha256 over the dtype, shape and bytes of each array, in order."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def make_fingerprint(*, split: dict[str, Any], normalization: str,
                     files: list[dict[str, Any]] | None = None,
                     content_sha256: str | None = None) -> dict[str, Any]:
  """A fingerprint (module docstring) with its ``id`` computed.

  Args:
    split: ``{"how": str, "train": int, "test": int}``.
    normalization: the standardisation mode applied after loading.
    files: :func:`file_record` of each file read, or None.
    content_sha256: :func:`arrays_sha256` of the raw arrays, where the data
      did not come from files.
  """
  if not files and content_sha256 is None:
    raise ValueError("a fingerprint needs files or a content_sha256")
  fp = {"files": sorted(files or [], key=lambda r: r["name"]),
        "content_sha256": content_sha256, "split": dict(split),
        "normalization": normalization}
  fp["id"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
  return fp


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
  """One line saying how two fingerprints differ (files, split, ...)."""
  parts = []
  old_files = {f["name"]: f for f in old.get("files", [])}
  new_files = {f["name"]: f for f in new.get("files", [])}
  for name in sorted(set(old_files) | set(new_files)):
    a, b = old_files.get(name), new_files.get(name)
    if a is None:
      parts.append(f"{name} is new")
    elif b is None:
      parts.append(f"{name} is no longer read")
    elif a["sha256"] != b["sha256"]:
      parts.append(f"{name} changed ({a['bytes']:,} -> {b['bytes']:,} bytes)")
  for key in ("content_sha256", "split", "normalization"):
    if old.get(key) != new.get(key):
      parts.append(f"{key}: {old.get(key)} -> {new.get(key)}")
  return "; ".join(parts) or "no recorded field differs"
