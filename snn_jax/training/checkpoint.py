"""Orbax checkpoints of a training state (model state including the
topology variables, optimizer state, epoch counter)."""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last ``max_to_keep`` epoch checkpoints under
  ``workdir/checkpoints`` (one per completed epoch)."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler())

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def save(self, epoch: int, state: dict[str, Any]) -> None:
    self.manager.save(epoch, args=ocp.args.StandardSave(state))
    self.manager.wait_until_finished()

  def restore(self, epoch: int, abstract_state: dict[str, Any]) -> dict[str, Any]:
    return self.manager.restore(epoch, args=ocp.args.StandardRestore(abstract_state))

  def metadata(self, epoch: int) -> dict[str, Any]:
    """The stored tree of checkpoint ``epoch`` with each array's metadata
    (``.shape``, ``.dtype``) in place of its values; list indices are
    string keys."""
    md = self.manager.item_metadata(epoch)
    return getattr(md, "tree", md)

  def close(self) -> None:
    self.manager.close()
