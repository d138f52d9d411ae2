"""Block-size-1 sparse layers against the libraries a researcher would
compare them with: one command, every peer in a fresh process, the same
shapes and the same random matrix in one run.

A layer computes ``Y = X @ W`` with ``X[batch, n]`` and a sparse ``W[n, n]``
whose nonzeros are an Erdős–Rényi pattern of the given density (seed 0),
float32. Two operations are timed:

* ``fwd``: ``Y`` alone;
* ``train``: ``Y``, ``dX = dY @ W^T`` and ``dW`` at the stored positions
  only (``(X^T @ dY)`` sampled at W's pattern), given a random ``dY`` --
  what one training step of the layer costs.

Peers (``--peers``; each is skipped with its reason where it is not
installed):

* ``snn_jax``: ``snn_jax.ops.bsmm`` with ``impl="auto"`` (``native_cpu``
  where it is built), jitted; ``train`` is ``jax.vjp`` of it;
* ``snn_jax_free_layouts``: the same jitted functions, compiled with
  ``jax.experimental.layout.Format(Layout.AUTO)`` for the dense operands
  (``X``, ``dY``) and the results, and the operands placed in the layouts
  XLA chose before the timing: the layer as one inside a network sees it,
  without the two layout copies a standalone jit of row-major arrays pays
  around a kernel that works feature-major. The torch peers' operands and
  results are transposed views (``X^T`` in, ``(.)^T`` out), which cost
  them nothing either. The layouts chosen are in the row (``layouts``);
* ``jax_dense``: ``X @ W`` dense in ``jnp.dot``, and its vjp;
* ``jax_bcsr``: ``jax.experimental.sparse.BCSR`` (forward only);
* ``scipy``: ``scipy.sparse`` CSR (forward only);
* ``torch_csr``: ``torch.sparse.mm`` on a CSR tensor (MKL on x86), the
  forward as a torch user writes it (``(W^T @ X^T)^T``);
* ``torch_csr_layer``: a hand-written torch CSR training layer: forward
  and dX by ``torch.sparse.mm`` (``W^T`` and ``W`` both kept as CSR), dW
  by ``torch.sparse.sampled_addmm`` at W's pattern;
* ``sparseprop``: SparseProp's ``SparseLinear`` (Nikdan et al. 2023,
  ``pip install sparseprop``), forward and torch autograd's backward;
* ``torch_dense``: ``X @ W`` in torch, and dX, dW by two dense matmuls.

Every point runs ``--rounds`` times (default 3), each a fresh process, the
peers' order reversed every other round; a row's time is the median of its
rounds' medians (``round_medians_ms`` keeps them), because on a shared
virtual machine one run of a peer can differ from the next by 1.5x.
Every peer's forward (and ``train``'s dX and dW) is checked against a
float64 NumPy reference before it is timed (normwise relative error <=
1e-4); one that disagrees is reported with its error and not timed.
``ideal_ms`` is density x ``jax_dense``'s time for the same op in the same
run. torch runs with as many threads as the machine has cores, as XLA does.
These peers are benchmark-only dependencies (``pip install -e
'.[peers]'``), never needed by the package.

Usage: python benchmarks/peers.py --out=benchmarks/cpu/peers_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("snn_jax", "snn_jax_free_layouts", "jax_dense", "jax_bcsr", "scipy",
         "torch_csr", "torch_csr_layer", "sparseprop", "torch_dense")
OPS = {"fwd": {"snn_jax", "snn_jax_free_layouts", "jax_dense", "jax_bcsr",
               "scipy", "torch_csr", "sparseprop", "torch_dense"},
       "train": {"snn_jax", "snn_jax_free_layouts", "jax_dense",
                 "torch_csr_layer", "sparseprop", "torch_dense"}}
DEFAULT_SHAPES = "4096:256:0.01,1000:128:0.045,4096:256:0.1"
TOLERANCE = 1e-4


def _problem(n: int, batch: int, density: float):
  """The matrix (as COO, sorted row-major), X and dY, from seed 0."""
  import numpy as np
  from snn_jax import topology
  t = topology.make("erdos_renyi", n, n, density=density, seed=0)
  rng = np.random.default_rng(0)
  order = np.lexsort((t.cols, t.rows))
  rows, cols = t.rows[order].astype(np.int64), t.cols[order].astype(np.int64)
  vals = rng.standard_normal(rows.size).astype(np.float32)
  x = rng.standard_normal((batch, n)).astype(np.float32)
  dy = rng.standard_normal((batch, n)).astype(np.float32)
  return rows, cols, vals, x, dy


def _reference(rows, cols, vals, x, dy, n):
  import numpy as np
  w = np.zeros((n, n))
  w[rows, cols] = vals
  y = x.astype(np.float64) @ w
  dx = dy.astype(np.float64) @ w.T
  dw = (x.T.astype(np.float64) @ dy)[rows, cols]
  return y, dx, dw


def _rel_err(out, ref) -> float:
  import numpy as np
  out = np.asarray(out, dtype=np.float64)
  return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def _build(peer: str, op: str, rows, cols, vals, x, dy, n
           ) -> tuple[Callable[[], Any], Callable[[Any], tuple]]:
  """(the timed call, a function of its output giving (y, dx, dw) -- the
  parts it computes -- in row-major stored order for dw)."""
  import numpy as np
  if peer in ("snn_jax", "snn_jax_free_layouts", "jax_dense", "jax_bcsr"):
    import jax
    import jax.numpy as jnp
    xj, dyj = jnp.asarray(x), jnp.asarray(dy)
  if peer in ("snn_jax", "snn_jax_free_layouts"):
    from snn_jax.ops import bsmm
    from snn_jax.sparse import BlockCSR
    w = BlockCSR.from_coo(rows, cols, shape=(n, n), block_size=1,
                          values=vals.reshape(-1, 1, 1))
    # from_coo stores blocks row-major: the same order as ``vals``. Its
    # arrays are host (NumPy) arrays: placed on the device once, as every
    # other peer's operands are, not copied there by every call (at
    # 1000 x 1000, 4.5 %, that copy was 0.17 of a 0.42 ms forward,
    # benchmarks/host_index_arrays.py).
    w = jax.device_put(w)
    if op == "fwd":
      fn, args, dense = (lambda x, w: bsmm(x, w)), (xj, w), (0,)
      parts = lambda out: (np.asarray(out), None, None)
    else:
      def fn(x, values, w, dy):
        y, pull = jax.vjp(lambda x, v: bsmm(x, w.replace(values=v)), x, values)
        dx, dv = pull(dy)
        return y, dx, dv
      args, dense = (xj, w.values, w, dyj), (0, 3)
      parts = lambda out: (np.asarray(out[0]), np.asarray(out[1]),
                           np.asarray(out[2]).reshape(-1))
    if peer == "snn_jax":
      f = jax.jit(fn)
      return (lambda: f(*args)), parts
    return _free_layouts(fn, args, dense), parts
  if peer == "jax_dense":
    wd = np.zeros((n, n), np.float32)
    wd[rows, cols] = vals
    wj = jnp.asarray(wd)
    if op == "fwd":
      f = jax.jit(lambda x, w: jnp.dot(x, w))
      return (lambda: f(xj, wj)), (lambda out: (out, None, None))

    def step(x, w, dy):
      y, pull = jax.vjp(jnp.dot, x, w)
      dx, dw = pull(dy)
      return y, dx, dw
    f = jax.jit(step)
    return ((lambda: f(xj, wj, dyj)),
            (lambda out: (out[0], out[1], np.asarray(out[2])[rows, cols])))
  if peer == "jax_bcsr":
    from jax.experimental import sparse as jsparse
    wt = np.zeros((n, n), np.float32)
    wt[cols, rows] = vals
    wb = jsparse.BCSR.fromdense(jnp.asarray(wt))
    f = jax.jit(lambda w, x: (w @ x.T).T)
    return (lambda: f(wb, xj)), (lambda out: (out, None, None))
  if peer == "scipy":
    import scipy.sparse as sp
    wt = sp.csr_matrix((vals, (cols, rows)), shape=(n, n))
    return (lambda: (wt @ x.T).T), (lambda out: (out, None, None))
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
  if peer == "torch_dense":
    wd = torch.zeros((n, n))
    wd[torch.from_numpy(rows), torch.from_numpy(cols)] = torch.from_numpy(vals)
    if op == "fwd":
      return (lambda: xt @ wd), (lambda out: (out.numpy(), None, None))

    def step():
      return xt @ wd, dyt @ wd.T, xt.T @ dyt
    return step, (lambda out: (out[0].numpy(), out[1].numpy(),
                               out[2].numpy()[rows, cols]))
  # W^T's CSR order (by output, then input) -> W's row-major stored order.
  t_order = np.lexsort((rows, cols))
  if peer == "sparseprop":
    from sparseprop.modules import SparseLinear
    wd_t = torch.zeros((n, n))
    wd_t[torch.from_numpy(cols), torch.from_numpy(rows)] = torch.from_numpy(vals)
    layer = SparseLinear(wd_t)       # its weight is [out, in]
    if op == "fwd":
      def fwd():
        with torch.no_grad():
          return layer(xt)
      return fwd, (lambda out: (out.numpy(), None, None))
    xg = xt.clone().requires_grad_(True)

    def sp_step():
      xg.grad = None
      layer.W_val.grad = None
      y = layer(xg)
      y.backward(dyt)
      return y.detach(), xg.grad, layer.W_val.grad

    def sp_parts(out):
      dw = np.empty(rows.size, np.float32)
      dw[t_order] = out[2].numpy()
      return out[0].numpy(), out[1].numpy(), dw
    return sp_step, sp_parts
  coo_t = torch.sparse_coo_tensor(
      torch.from_numpy(np.stack([cols, rows])), torch.from_numpy(vals),
      (n, n)).coalesce()
  w_t = coo_t.to_sparse_csr()          # W^T: [n_out, n_in]
  if peer == "torch_csr":
    assert op == "fwd", "torch_csr is the forward; torch_csr_layer trains"
    return ((lambda: torch.sparse.mm(w_t, xt.T).T),
            (lambda out: (out.numpy(), None, None)))
  assert op == "train", "torch_csr_layer is timed training; torch_csr forward"
  w_csr = torch.sparse_coo_tensor(
      torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(vals),
      (n, n)).coalesce().to_sparse_csr()  # W: [n_in, n_out]
  pattern = torch.sparse_csr_tensor(w_t.crow_indices(), w_t.col_indices(),
                                    torch.zeros_like(w_t.values()), (n, n))

  def step():
    y = torch.sparse.mm(w_t, xt.T).T
    dx = torch.sparse.mm(w_csr, dyt.T).T
    dw_t = torch.sparse.sampled_addmm(pattern, dyt.T, xt, beta=0.0)
    return y, dx, dw_t

  def parts(out):
    dw = np.empty(rows.size, np.float32)
    dw[t_order] = out[2].values().numpy()
    return out[0].numpy(), out[1].numpy(), dw
  return step, parts


def _free_layouts(fn, args, dense):
  """``fn`` compiled with XLA choosing the layouts of ``args[i]`` for ``i``
  in ``dense`` and of every result, and a call of it on those arguments
  already placed in the chosen layouts; ``call.layouts`` names them
  (``major_to_minor``: ``[0, 1]`` row-major, ``[1, 0]`` feature-major for
  a ``[batch, n]`` array). Read the results with ``np.asarray``: in JAX
  0.10.2 an eager ``jnp`` operation on such a result gave wrong values
  here (BUILD_NOTES.md), NumPy's copy the right ones."""
  import jax
  from jax.experimental.layout import Format, Layout
  auto = Format(Layout.AUTO)
  compiled = jax.jit(fn, in_shardings=tuple(
      auto if i in dense else None for i in range(len(args))),
      out_shardings=auto).lower(*args).compile()
  formats = compiled.input_formats[0]
  placed = tuple(jax.device_put(a, formats[i]) if i in dense else a
                 for i, a in enumerate(args))

  def call():
    return compiled(*placed)
  outs = jax.tree_util.tree_leaves(compiled.output_formats)
  call.layouts = {
      "inputs": [list(formats[i].layout.major_to_minor) for i in dense],
      "outputs": [list(f.layout.major_to_minor) for f in outs]}
  return call


def _one(peer: str, op: str, n: int, batch: int, density: float,
         repeats: int, min_seconds: float) -> dict[str, Any]:
  rows, cols, vals, x, dy = _problem(n, batch, density)
  row = {"peer": peer, "op": op, "n": n, "batch": batch,
         "density": float(rows.size / (n * n)), "nnz": int(rows.size)}
  try:
    call, parts = _build(peer, op, rows, cols, vals, x, dy, n)
  except ImportError as err:
    return {**row, "skipped": f"not installed: {err}"}
  ref = _reference(rows, cols, vals, x, dy, n)
  got = parts(call())
  errs = [_rel_err(g, r) for g, r in zip(got, ref) if g is not None]
  row["max_rel_err"] = max(errs)
  if row["max_rel_err"] > TOLERANCE:
    return {**row, "skipped": f"disagrees with the reference "
                              f"({row['max_rel_err']:.2e} > {TOLERANCE})"}
  if hasattr(call, "layouts"):
    row["layouts"] = call.layouts
  from snn_jax.utils import time_fn
  row.update(time_fn(call, warmup=3, repeats=repeats, min_seconds=min_seconds))
  return row


def _run_point(peer: str, op: str, n: int, batch: int, density: float, args,
               rnd: int) -> dict[str, Any]:
  """One peer, op and shape in a fresh process."""
  t0 = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__),
       f"--one={peer}:{op}:{n}:{batch}:{density}",
       f"--repeats={args.repeats}", f"--min_seconds={args.min_seconds}"],
      capture_output=True, text=True)
  if proc.returncode != 0:
    row = {"peer": peer, "op": op, "n": n, "batch": batch, "density": density,
           "skipped": "failed: " + proc.stderr.strip()[-400:]}
  else:
    row = json.loads(proc.stdout.strip().splitlines()[-1])
  row["process_seconds"] = time.perf_counter() - t0
  shown = (f"{row['median_ms']:9.3f} ms" if "median_ms" in row
           else row["skipped"][:70])
  print(f"round {rnd}  {n:5d} {batch:4d} {density:6.3f} {op:5s} {peer:20s} {shown}",
        flush=True)
  return row


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", help="where the JSON goes")
  parser.add_argument("--shapes", default=DEFAULT_SHAPES,
                      help="n:batch:density,... (square layers)")
  parser.add_argument("--peers", default=",".join(PEERS))
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--min_seconds", type=float, default=1.0)
  parser.add_argument("--rounds", type=int, default=3,
                      help="times every point is run (each a fresh process); "
                      "the row's time is the median of its rounds' medians")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # peer:op:n:batch:density
  args = parser.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, ROOT)
  if args.one:
    peer, op, n, batch, density = args.one.split(":")
    print(json.dumps(_one(peer, op, int(n), int(batch), float(density),
                          args.repeats, args.min_seconds)))
    return 0
  if not args.out:
    parser.error("--out is required")
  peers = [p for p in args.peers.split(",") if p]
  unknown = sorted(set(peers) - set(PEERS))
  if unknown:
    parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
  shapes = []
  for s in args.shapes.split(","):
    try:
      n, batch, density = s.split(":")
      shapes.append((int(n), int(batch), float(density)))
    except ValueError:
      parser.error(f"--shapes: {s!r} is not n:batch:density")
  rounds: dict[tuple, list[dict]] = {}
  for rnd in range(args.rounds):
    # Each round runs every point once; the peers' order alternates between
    # rounds, so slow drifts of the machine fall on all of them alike.
    order = peers if rnd % 2 == 0 else peers[::-1]
    for n, batch, density in shapes:
      for op in ("fwd", "train"):
        for peer in order:
          if peer not in OPS[op]:
            continue
          rounds.setdefault((n, batch, density, op, peer), []).append(
              _run_point(peer, op, n, batch, density, args, rnd))
  rows = []
  for (n, batch, density, op, peer), runs in rounds.items():
    timed = [r for r in runs if "median_ms" in r]
    if len(timed) < len(runs):
      rows.append(next(r for r in runs if "median_ms" not in r))
      continue
    row = dict(timed[0])
    row["round_medians_ms"] = [r["median_ms"] for r in timed]
    row["median_ms"] = statistics.median(row["round_medians_ms"])
    row["max_rel_err"] = max(r["max_rel_err"] for r in timed)
    row["process_seconds"] = sum(r["process_seconds"] for r in timed)
    rows.append(row)
  # Rows come in round 0's order: by shape, then op, then the peers as given.
  for row in rows:
    dense = [r for r in rows if r["peer"] == "jax_dense" and r["op"] == row["op"]
             and (r["n"], r["batch"]) == (row["n"], row["batch"])
             and abs(r["density"] - row["density"]) < 1e-9 and "median_ms" in r]
    if dense and "median_ms" in row:
      row["ideal_ms"] = row["density"] * dense[0]["median_ms"]
      row["x_ideal"] = row["median_ms"] / row["ideal_ms"]
  from snn_jax.utils import env
  versions = env.versions()
  try:
    import torch
    versions["torch"] = torch.__version__
  except ImportError:
    pass
  result = {"what": __doc__.split("\n")[0] + " " + __doc__.split("\n")[1],
            "command": " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
            "rows": rows, "device": env.device_info(), "versions": versions}
  from snn_jax.utils import write_json
  write_json(args.out, result)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
