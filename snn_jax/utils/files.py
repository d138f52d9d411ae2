"""Writing result files so that a crash, a kill -9 or a full disk leaves
either the old file or the new one, never a truncated mix."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs) -> Iterator[IO]:
  """Opens a temporary file next to ``path`` for writing; when the block
  ends without an exception the data is flushed to disk and the file
  replaces ``path`` in one ``os.replace``. On any exception (including
  ``OSError`` from a full disk) the temporary file is removed and ``path``
  is left as it was.

  ``path`` may be a symlink: the file it points to is replaced in place
  (same directory), so a link to a device such as ``/dev/full`` is written
  through, not replaced.
  """
  if "w" not in mode:
    raise ValueError(f"atomic_write writes whole files: mode {mode!r} needs 'w'")
  target = os.path.realpath(path)
  if not os.path.isfile(target) and os.path.exists(target):
    # A device or pipe cannot be replaced: write straight through.
    with open(target, mode, **open_kwargs) as f:
      yield f
    return
  tmp = f"{target}.tmp-{os.getpid()}"
  try:
    with open(tmp, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, target)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as indented JSON to ``path`` whole (``atomic_write``),
  creating its folder first; what the benchmark scripts write results
  with."""
  import json
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic_write(path) as f:
    json.dump(obj, f, indent=1)
