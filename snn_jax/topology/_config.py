"""``TopologyConfig``: which topology a model's layers get, as data.

The spec of a topology family with its size parameters, validated once at
construction, serialisable to JSON and back; ``make_stack`` builds it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from snn_jax.topology._registry import _check_params, make, make_stack, spec
from snn_jax.topology._topology import Topology, load_stack
from snn_jax.utils.config import ConfigPart


@dataclasses.dataclass(frozen=True)
class TopologyConfig(ConfigPart):
  """A registered topology family and its parameters, for every sparse
  layer of a model.

  Attributes:
    name: a registered generator (``snn_jax.topology.names()``).
    density: fraction of each layer's ``n_in·n_out`` connections kept, in
      (0, 1]; or ``fan_in``: inputs per output neuron. Not both. ``dense``
      takes neither; families sized by their own parameters (RadiX-Net's
      radices, SET's ``epsilon``) need neither.
    block_size: one value, or one per layer (``make_stack``).
    params: the generator's own keyword parameters (``spec(name).params``),
      e.g. ``{"epsilon": 20}``; unknown names are refused here.
    directory: instead of generating, load the stack that
      ``save_stack`` wrote there (``layer_<l>.npz``, e.g. prune.py's
      ``pruned_topology/``); the generator fields are then unused.
  """
  name: str = "erdos_renyi"
  density: float | None = None
  fan_in: int | None = None
  block_size: int | tuple[int, ...] = 1
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  directory: str | None = None

  def __post_init__(self):
    s = spec(self.name)  # unknown names raise, listing the known ones
    if not isinstance(self.params, Mapping):
      raise TypeError(f"topology params must be a mapping, got "
                      f"{type(self.params).__name__}")
    object.__setattr__(self, "params", dict(self.params))
    _check_params(s, self.params)
    if self.name == "dense" and (self.density is not None
                                 or self.fan_in is not None):
      raise ValueError(
          f"topology 'dense' keeps every connection and takes no density or "
          f"fan_in (got density={self.density}, fan_in={self.fan_in}); unset "
          "them or choose a sparse topology")
    if self.density is not None and self.fan_in is not None:
      raise ValueError(f"give density or fan_in, not both (got "
                       f"{self.density} and {self.fan_in})")
    if self.density is not None and not 0.0 < float(self.density) <= 1.0:
      raise ValueError(f"density must be in (0, 1], got {self.density}")
    if self.fan_in is not None and int(self.fan_in) < 1:
      raise ValueError(f"fan_in must be >= 1, got {self.fan_in}")
    bs = self.block_size
    if isinstance(bs, (list, tuple)):
      bs = tuple(int(b) for b in bs)
      if not bs:
        raise ValueError("block_size needs one value or one per layer, got ()")
    else:
      bs = int(bs)
    if any(b < 1 for b in (bs if isinstance(bs, tuple) else (bs,))):
      raise ValueError(f"block sizes must be >= 1, got {self.block_size}")
    object.__setattr__(self, "block_size", bs)

  @property
  def is_dense(self) -> bool:
    return self.name == "dense"

  def make_stack(self, widths: Sequence[int], *, seed: int,
                 chained: bool = True) -> list[Topology]:
    """One topology per layer of an MLP of these widths (loaded from
    ``directory`` when set; ``chained=False`` where a stack does not chain,
    as LeNet-5's convolutions before the flattening)."""
    if self.directory is not None:
      # Checked here, where it is read: a config is data, and may be built
      # (or loaded from a file) on a machine that does not hold the folder.
      if not os.path.isdir(self.directory):
        raise FileNotFoundError(f"topology directory {self.directory!r} does "
                                "not exist")
      return load_stack(self.directory, chained=chained)
    return make_stack(self.name, widths, density=self.density,
                      fan_in=self.fan_in, block_size=self._block_sizes(),
                      seed=seed, **self.params)

  def make(self, n_in: int, n_out: int, *, seed: int) -> Topology:
    """One layer of this family (a model whose sparse layers are not one
    chain, e.g. the convolution and fully connected layer of Alford's
    LeNet-5); ``block_size`` must be one value."""
    if isinstance(self.block_size, tuple):
      raise ValueError("a single layer takes one block_size, got "
                       f"{self.block_size}")
    return make(self.name, n_in, n_out, density=self.density,
                fan_in=self.fan_in, block_size=self.block_size, seed=seed,
                **self.params)

  def _block_sizes(self) -> int | list[int]:
    return list(self.block_size) if isinstance(self.block_size, tuple) \
        else self.block_size



