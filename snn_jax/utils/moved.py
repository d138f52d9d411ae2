"""Names that moved to another module keep a clear error at their old
place instead of a bare AttributeError."""

from __future__ import annotations

from typing import Callable, Iterable


def moved_to(module: str, names: Iterable[str], new_home: str,
             why: str) -> Callable[[str], None]:
  """A module-level ``__getattr__`` for ``module`` whose ``names`` now live
  in ``new_home``: asking for one raises an AttributeError saying where it
  went and why; any other unknown name raises the usual one."""
  names = frozenset(names)

  def __getattr__(name: str):
    if name in names:
      raise AttributeError(f"{module}.{name} moved to {new_home}.{name} "
                           f"({why})")
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
  return __getattr__
