"""``ConfigPart``: what every frozen config dataclass shares -- JSON dicts
out and in, and ``replace``."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="ConfigPart")


def _jsonable(value: Any) -> Any:
  if isinstance(value, ConfigPart):
    return value.to_dict()
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, Mapping):
    return {k: _jsonable(v) for k, v in value.items()}
  return value


class ConfigPart:
  """Mixin for frozen config dataclasses: ``to_dict`` (JSON-able: tuples as
  lists, nested parts as their dicts), ``from_dict`` (the dataclass's own
  ``__post_init__`` turns lists back into tuples and dicts into parts) and
  ``replace`` (``dataclasses.replace``: the rules are checked again)."""

  def to_dict(self) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)}

  @classmethod
  def from_dict(cls: type[T], raw: Mapping[str, Any]) -> T:
    return cls(**dict(raw))

  def replace(self: T, **changes: Any) -> T:
    return dataclasses.replace(self, **changes)
