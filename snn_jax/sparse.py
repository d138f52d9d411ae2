"""The block-CSR weight format shared by topologies, kernels and modules.

Orientation
-----------
A ``BlockCSR`` holds a weight matrix ``W`` of shape ``(n_in, n_out)`` -- the
same layout as a Flax ``Dense`` kernel -- so a layer computes ``Y = X @ W`` with
``X`` of shape ``[..., n_in]``. The matrix is tiled into square blocks of
``block_size x block_size``; block ``(i, j)`` covers input units
``i*bs:(i+1)*bs`` and output units ``j*bs:(j+1)*bs``. Only the stored
(nonzero) blocks are kept.

Arrays (pytree children; every index array is int32)
----------------------------------------------------
``values``    float[nnzb, bs, bs]  stored blocks, in row-major (CSR) order:
                                    sorted by block row, then block column.
``col_idx``   int32[nnzb]          block column of each stored block.
``row_ptr``   int32[n_rb + 1]      blocks of block row ``i`` are
                                    ``values[row_ptr[i]:row_ptr[i+1]]``.
``row_idx``   int32[nnzb]          block row of each stored block (for
                                    segment operations).
``col_order`` int32[nnzb]          transpose metadata: ``col_order[k]`` is the
                                    storage position of the k-th block in
                                    column-major order (stable in row).
``col_ptr``   int32[n_cb + 1]      blocks of block column ``j`` are
                                    ``values[col_order[col_ptr[j]:col_ptr[j+1]]]``.

The row-ordered view (``row_ptr``, ``col_idx``) serves ``dX = dY @ W.T``; the
column-ordered view (``col_order``, ``col_ptr``) serves ``Y = X @ W``, and dW is
computed block by block at the stored positions (``row_idx``, ``col_idx``). Both
orderings are built once on the host, so no kernel sorts at run time -- the way
block-sparse GPU libraries keep the transposed offsets beside the matrix.

``shape`` and ``block_size`` are static (pytree aux data); ``nnzb`` is static
through the shape of ``values``, so ``jit`` traces once per topology and
adaptive training can rewrite the indices at fixed ``nnzb``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BlockCSR", "block_metadata"]

# The index arrays of a BlockCSR, by name (every layer and rewiring that
# stores one keeps these).
INDEX_FIELDS = ("col_idx", "row_ptr", "row_idx", "col_order", "col_ptr")


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def block_metadata(
    rows: np.ndarray, cols: np.ndarray, n_row_blocks: int, n_col_blocks: int
) -> dict[str, np.ndarray]:
  """Builds every index array of the format from sorted block coordinates.

  Args:
    rows: int[nnzb] block rows, sorted together with ``cols`` in row-major
      order, with no duplicates.
    cols: int[nnzb] block columns.
    n_row_blocks: number of block rows, ``n_in // block_size``.
    n_col_blocks: number of block columns, ``n_out // block_size``.

  Returns:
    dict with int32 ``col_idx``, ``row_ptr``, ``row_idx``, ``col_order`` and
    ``col_ptr`` as documented in the module docstring.
  """
  rows = np.asarray(rows, dtype=np.int64)
  cols = np.asarray(cols, dtype=np.int64)
  row_counts = np.bincount(rows, minlength=n_row_blocks)
  col_counts = np.bincount(cols, minlength=n_col_blocks)
  row_ptr = np.concatenate([[0], np.cumsum(row_counts)])
  col_ptr = np.concatenate([[0], np.cumsum(col_counts)])
  col_order = np.argsort(cols, kind="stable")  # stable keeps row order inside.
  return {
      "col_idx": cols.astype(np.int32),
      "row_ptr": row_ptr.astype(np.int32),
      "row_idx": rows.astype(np.int32),
      "col_order": col_order.astype(np.int32),
      "col_ptr": col_ptr.astype(np.int32),
  }


def _check_shape(shape: tuple[int, int], block_size: int) -> tuple[int, int]:
  if not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise ValueError(f"block_size must be a positive int, got {block_size!r}")
  if len(shape) != 2:
    raise ValueError(f"shape must be (n_in, n_out), got {shape!r}")
  n_in, n_out = (int(s) for s in shape)
  if n_in < 1 or n_out < 1:
    raise ValueError(f"shape must be positive, got {shape!r}")
  for name, n in (("n_in", n_in), ("n_out", n_out)):
    if n % block_size:
      raise ValueError(
          f"{name}={n} is not divisible by block_size={block_size}; choose a "
          "block size that divides both layer widths (block_size=1 always "
          "works)"
      )
  return n_in, n_out


@jax.tree_util.register_pytree_node_class
class BlockCSR:
  """An immutable block-sparse ``(n_in, n_out)`` matrix; see module docstring.

  Build one with :meth:`from_mask`, :meth:`from_dense` or :meth:`from_coo`;
  the constructor itself validates every array when they are concrete
  (outside ``jit``) and raises ``ValueError``/``TypeError`` saying what was
  expected and what was given.

  Example:
    >>> import numpy as np
    >>> w = BlockCSR.from_mask(np.eye(2, dtype=bool), block_size=2)
    >>> w.shape, w.nnzb, w.values.shape
    ((4, 4), 2, (2, 2, 2))
  """

  __slots__ = ("values", *INDEX_FIELDS, "shape", "block_size")

  def __init__(
      self,
      values: jax.Array | np.ndarray,
      col_idx: jax.Array | np.ndarray,
      row_ptr: jax.Array | np.ndarray,
      row_idx: jax.Array | np.ndarray,
      col_order: jax.Array | np.ndarray,
      col_ptr: jax.Array | np.ndarray,
      *,
      shape: tuple[int, int],
      block_size: int,
  ):
    n_in, n_out = _check_shape(tuple(shape), block_size)
    object.__setattr__(self, "shape", (n_in, n_out))
    object.__setattr__(self, "block_size", int(block_size))
    fields = dict(
        values=values, col_idx=col_idx, row_ptr=row_ptr, row_idx=row_idx,
        col_order=col_order, col_ptr=col_ptr,
    )
    for name, arr in fields.items():
      object.__setattr__(self, name, arr)
    self._validate()

  # -- pytree protocol -------------------------------------------------------
  def tree_flatten(self):
    children = (self.values,) + tuple(getattr(self, f) for f in INDEX_FIELDS)
    return children, (self.shape, self.block_size)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    shape, block_size = aux
    object.__setattr__(obj, "shape", shape)
    object.__setattr__(obj, "block_size", block_size)
    object.__setattr__(obj, "values", children[0])
    for name, arr in zip(INDEX_FIELDS, children[1:]):
      object.__setattr__(obj, name, arr)
    return obj

  def __setattr__(self, name, value):
    raise dataclasses.FrozenInstanceError(
        f"BlockCSR is immutable; use .replace({name}=...)"
    )

  # -- derived sizes ---------------------------------------------------------
  @property
  def nnzb(self) -> int:
    """Number of stored blocks (static)."""
    return int(self.values.shape[0])

  @property
  def n_row_blocks(self) -> int:
    return self.shape[0] // self.block_size

  @property
  def n_col_blocks(self) -> int:
    return self.shape[1] // self.block_size

  @property
  def dtype(self):
    return self.values.dtype

  @property
  def density(self) -> float:
    """Fraction of the dense matrix's entries held in stored blocks."""
    return self.nnzb / (self.n_row_blocks * self.n_col_blocks)

  @property
  def nnz(self) -> int:
    """Number of stored scalar entries, ``nnzb * bs**2``."""
    return self.nnzb * self.block_size**2

  def __repr__(self) -> str:
    return (
        f"BlockCSR(shape={self.shape}, block_size={self.block_size}, "
        f"nnzb={self.nnzb}, density={self.density:.4g}, "
        f"dtype={self.values.dtype})"
    )

  # -- validation ------------------------------------------------------------
  def _validate(self) -> None:
    bs = self.block_size
    n_rb, n_cb = self.n_row_blocks, self.n_col_blocks
    v = self.values
    if not hasattr(v, "shape") or not hasattr(v, "dtype"):
      raise TypeError(f"values must be an array, got {type(v).__name__}")
    if v.ndim != 3 or tuple(v.shape[1:]) != (bs, bs):
      raise ValueError(
          f"values must have shape [nnzb, {bs}, {bs}], got {tuple(v.shape)}"
      )
    if not jnp.issubdtype(v.dtype, jnp.floating):
      raise TypeError(f"values must be floating point, got dtype {v.dtype}")
    nnzb = v.shape[0]
    expected = dict(
        col_idx=(nnzb,), row_ptr=(n_rb + 1,), row_idx=(nnzb,),
        col_order=(nnzb,), col_ptr=(n_cb + 1,),
    )
    for name, shp in expected.items():
      arr = getattr(self, name)
      if not hasattr(arr, "dtype"):
        raise TypeError(f"{name} must be an int32 array, got {type(arr)}")
      if arr.dtype != np.int32:
        raise TypeError(f"{name} must have dtype int32, got {arr.dtype}")
      if tuple(arr.shape) != shp:
        raise ValueError(f"{name} must have shape {shp}, got {arr.shape}")
    if not all(_is_concrete(getattr(self, f)) for f in INDEX_FIELDS):
      return  # Inside jit: trust the structure validated on the host.
    col_idx, row_ptr, row_idx, col_order, col_ptr = (
        np.asarray(getattr(self, f)) for f in INDEX_FIELDS
    )
    if nnzb and (col_idx.min() < 0 or col_idx.max() >= n_cb):
      raise ValueError(
          f"col_idx out of range: expected 0 <= col_idx < {n_cb}, got "
          f"[{col_idx.min()}, {col_idx.max()}]"
      )
    if nnzb and (row_idx.min() < 0 or row_idx.max() >= n_rb):
      raise ValueError(
          f"row_idx out of range: expected 0 <= row_idx < {n_rb}, got "
          f"[{row_idx.min()}, {row_idx.max()}]"
      )
    key = row_idx.astype(np.int64) * n_cb + col_idx
    if nnzb > 1:
      d = np.diff(key)
      if (d == 0).any():
        k = int(np.flatnonzero(d == 0)[0])
        raise ValueError(
            f"duplicate block ({row_idx[k]}, {col_idx[k]}) at storage "
            f"positions {k} and {k + 1}; each block may be stored once"
        )
      if (d < 0).any():
        k = int(np.flatnonzero(d < 0)[0])
        raise ValueError(
            "blocks are not sorted in row-major order: block "
            f"({row_idx[k]}, {col_idx[k]}) at position {k} comes before "
            f"({row_idx[k + 1]}, {col_idx[k + 1]}); build with "
            "BlockCSR.from_coo(...) to sort"
        )
    ref = block_metadata(row_idx, col_idx, n_rb, n_cb)
    for name in ("row_ptr", "col_order", "col_ptr"):
      if not np.array_equal(ref[name], np.asarray(getattr(self, name))):
        raise ValueError(
            f"{name} is inconsistent with row_idx/col_idx; rebuild the "
            "metadata with snn_jax.sparse.block_metadata(...)"
        )

  # -- construction ------------------------------------------------------------
  @classmethod
  def from_coo(
      cls,
      rows: np.ndarray,
      cols: np.ndarray,
      *,
      shape: tuple[int, int],
      block_size: int,
      values: jax.Array | np.ndarray | None = None,
      dtype: Any = jnp.float32,
  ) -> "BlockCSR":
    """Builds from block coordinates in any order.

    Args:
      rows: int[nnzb] block rows. cols: int[nnzb] block columns.
      shape: (n_in, n_out) of the full matrix.
      block_size: the block edge ``bs``.
      values: optional float[nnzb, bs, bs], given in the same order as
        ``rows``/``cols`` (they are permuted with the sort). Default: ones.
      dtype: dtype of the default values.
    """
    n_in, n_out = _check_shape(tuple(shape), block_size)
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    for name, a in (("rows", rows), ("cols", cols)):
      if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(
            f"{name} must be a 1-D integer array, got dtype {a.dtype} and "
            f"shape {a.shape}"
        )
    if rows.shape != cols.shape:
      raise ValueError(
          f"rows and cols differ in length: {rows.shape} vs {cols.shape}"
      )
    n_rb, n_cb = n_in // block_size, n_out // block_size
    if rows.size and (rows.min() < 0 or rows.max() >= n_rb):
      raise ValueError(f"rows out of range [0, {n_rb}): {rows.min()}..{rows.max()}")
    if cols.size and (cols.min() < 0 or cols.max() >= n_cb):
      raise ValueError(f"cols out of range [0, {n_cb}): {cols.min()}..{cols.max()}")
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    if values is None:
      values = np.ones((rows.size, block_size, block_size), dtype=dtype)
    else:
      if tuple(values.shape) != (rows.size, block_size, block_size):
        raise ValueError(
            f"values must have shape {(rows.size, block_size, block_size)}, "
            f"got {tuple(values.shape)}"
        )
      values = values[order] if rows.size else values
    meta = block_metadata(rows, cols, n_rb, n_cb)
    return cls(values, **meta, shape=(n_in, n_out), block_size=block_size)

  @classmethod
  def from_mask(
      cls,
      block_mask: np.ndarray,
      block_size: int,
      values: jax.Array | np.ndarray | None = None,
      dtype: Any = jnp.float32,
  ) -> "BlockCSR":
    """Builds from a boolean mask over blocks.

    Args:
      block_mask: bool[n_in // bs, n_out // bs]; True marks a stored block.
      block_size: block edge ``bs``.
      values: optional float[nnzb, bs, bs] in row-major order of the mask's
        True entries. Default: ones of ``dtype``.
    """
    block_mask = np.asarray(block_mask)
    if block_mask.ndim != 2:
      raise ValueError(
          f"block_mask must be 2-D, got shape {block_mask.shape}"
      )
    if block_mask.dtype != np.bool_:
      raise TypeError(f"block_mask must be bool, got dtype {block_mask.dtype}")
    rows, cols = np.nonzero(block_mask)
    shape = (block_mask.shape[0] * block_size, block_mask.shape[1] * block_size)
    return cls.from_coo(
        rows, cols, shape=shape, block_size=block_size, values=values,
        dtype=dtype,
    )

  @classmethod
  def from_dense(
      cls,
      dense: jax.Array | np.ndarray,
      block_size: int,
      *,
      block_mask: np.ndarray | None = None,
  ) -> "BlockCSR":
    """Builds from a dense ``(n_in, n_out)`` matrix.

    Args:
      dense: float[n_in, n_out].
      block_size: block edge ``bs``; must divide both sides.
      block_mask: which blocks to keep; default: every block holding a
        nonzero entry.
    """
    dense_np = np.asarray(dense)
    if dense_np.ndim != 2:
      raise ValueError(f"dense must be 2-D (n_in, n_out), got {dense_np.shape}")
    if not np.issubdtype(dense_np.dtype, np.floating) and dense_np.dtype.name != "bfloat16":
      raise TypeError(f"dense must be floating point, got {dense_np.dtype}")
    n_in, n_out = _check_shape(dense_np.shape, block_size)
    bs = block_size
    blocks = dense_np.reshape(n_in // bs, bs, n_out // bs, bs).transpose(0, 2, 1, 3)
    if block_mask is None:
      block_mask = (blocks != 0).any(axis=(2, 3))
    block_mask = np.asarray(block_mask, dtype=bool)
    if block_mask.shape != (n_in // bs, n_out // bs):
      raise ValueError(
          f"block_mask must have shape {(n_in // bs, n_out // bs)}, got "
          f"{block_mask.shape}"
      )
    rows, cols = np.nonzero(block_mask)
    values = jnp.asarray(blocks[rows, cols])
    return cls.from_coo(rows, cols, shape=(n_in, n_out), block_size=bs, values=values)

  def replace(self, **changes) -> "BlockCSR":
    """Returns a copy with some arrays replaced (validated when concrete)."""
    fields = {f: getattr(self, f) for f in ("values", *INDEX_FIELDS)}
    unknown = set(changes) - set(fields)
    if unknown:
      raise TypeError(f"unknown BlockCSR fields {sorted(unknown)}")
    fields.update(changes)
    return BlockCSR(**fields, shape=self.shape, block_size=self.block_size)

  # -- conversion ------------------------------------------------------------
  def block_coords(self) -> tuple[np.ndarray, np.ndarray]:
    """Host copies of (row_idx, col_idx), int32[nnzb] each."""
    return np.asarray(self.row_idx), np.asarray(self.col_idx)

  def block_mask(self) -> np.ndarray:
    """bool[n_in // bs, n_out // bs], True at stored blocks."""
    mask = np.zeros((self.n_row_blocks, self.n_col_blocks), dtype=bool)
    rows, cols = self.block_coords()
    mask[rows, cols] = True
    return mask

  def to_dense(self) -> jax.Array:
    """The dense ``(n_in, n_out)`` matrix (jit-able; zeros off the blocks)."""
    bs = self.block_size
    out = jnp.zeros(
        (self.n_row_blocks, self.n_col_blocks, bs, bs), self.values.dtype
    )
    out = out.at[self.row_idx, self.col_idx].set(self.values)
    return out.transpose(0, 2, 1, 3).reshape(self.shape)
