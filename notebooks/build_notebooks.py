"""Writes notebooks/quickstart.ipynb and notebooks/kernels.ipynb from the
cells below and executes them in place, so the committed notebooks carry
their outputs and figures:

  python notebooks/build_notebooks.py            # both
  python notebooks/build_notebooks.py kernels    # one

The suite (tests/test_notebook.py) executes the committed notebooks again.
"""

import os
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))


def md(text):
  return nbformat.v4.new_markdown_cell(text.strip())


def code(text):
  return nbformat.v4.new_code_cell(text.strip())


QUICKSTART = [
    md("""
# snn_jax quickstart

snn_jax trains neural networks whose layers are sparse *from the start*:
the connection pattern -- the **topology** -- is chosen before training
(a random graph, an expander, a RadiX-Net, ...) or evolved during it
(SET, RigL). This notebook walks through the library floor by floor, the
way data flows through it:

`topology` (graphs, NumPy) → `sparse.BlockCSR` (the stored matrix) →
`ops.bsmm` (the sparse matmul kernels) → `nn` (Flax NNX layers) →
`training` (loop, checkpoints, SET/RigL) → `analysis` (metrics, NNSTD).

Everything runs on a CPU in a couple of minutes on the embedded digits
data set (no download).
"""),
    code("""
%matplotlib inline
import tempfile
import numpy as np
import jax, jax.numpy as jnp
import optax
import matplotlib.pyplot as plt
from flax import nnx
from IPython.display import Image, display

from snn_jax import topology, analysis, nn, ops, data
from snn_jax.sparse import BlockCSR
from snn_jax.nn import ModelConfig
from snn_jax.topology import TopologyConfig
from snn_jax.training import RunConfig, TrainConfig, train_and_evaluate
print('jax', jax.__version__, 'on', jax.default_backend())
print('topology families:', ', '.join(topology.names()))
"""),
    md("""
## 1. Topologies

A `Topology` is a bipartite graph between the `n_in` inputs and `n_out`
outputs of one layer, stored as a boolean mask over `block_size x
block_size` tiles. `topology.make(name, n_in, n_out, ...)` builds one
layer; `topology.make_stack(name, widths, ...)` builds a whole network's
worth. Here are three families at the same density (1/16): Erdős–Rényi
(random), a RadiX-Net (Alford et al.; structured, every input reaches
every output) and a small-world ring lattice with rewired edges.
"""),
    code("""
widths = [256, 256, 256]
stacks = {
    'erdos_renyi': topology.make_stack('erdos_renyi', widths, density=1/16, seed=0),
    'radixnet': topology.make_stack('radixnet', widths, radices=[[16, 16]]),
    'small_world': topology.make_stack('small_world', widths, density=1/16, seed=0),
}
for name, stack in stacks.items():
    print(f'{name:12s}', stack[0])

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, (name, stack) in zip(axes, stacks.items()):
    ax.imshow(stack[0].mask()[:96, :96], cmap='Greys', interpolation='nearest')
    ax.set_title(f'{name}: first layer, 96x96 corner', fontsize=9)
    ax.set_xlabel('output unit'); ax.set_ylabel('input unit')
fig.tight_layout()
"""),
    md("""
### Their spectra

Bourely et al. (2017) relate accuracy to how well a layer *expands*: the
gap between the largest and second-largest singular value of the
(normalised) biadjacency matrix. `analysis.metrics_table` computes it
with the algebraic connectivity, reachability and path statistics of the
whole network; below we also plot the leading singular values of each
first layer.
"""),
    code("""
cols = ['scope', 'layer', 'density', 'spectral_gap', 'algebraic_connectivity', 'reachability']
for name, stack in stacks.items():
    print(name)
    print(analysis.format_table(analysis.metrics_table(stack), cols))

fig, ax = plt.subplots(figsize=(5.5, 3.4))
for name, stack in stacks.items():
    b = stack[0].biadjacency().toarray().astype(float)
    b /= np.sqrt(np.outer(b.sum(1), b.sum(0)).clip(min=1))  # D_in^-1/2 B D_out^-1/2
    ax.plot(np.linalg.svd(b, compute_uv=False)[:40], 'o-', ms=3, label=name)
ax.set_xlabel('index'); ax.set_ylabel('singular value (normalised)')
ax.set_title('first layer: the gap after the first singular value', fontsize=9)
ax.legend();
"""),
    md("""
Erdős–Rényi has by far the largest gap: random graphs are good expanders.
The RadiX-Net's layers are poor expanders one by one (its first layer is a
band, its second a set of disconnected blocks, gap 0), yet together they
join every input to every output by exactly one path (reachability 1).
The small-world ring sits in between. Which of these properties predicts
accuracy is what `experiments/reproduce.py --paper=bourely2017` studies.
"""),
    md("""
## 2. BlockCSR and the sparse matmul

A topology becomes a `BlockCSR` matrix: the values of the stored blocks
plus index arrays for both traversal orders (row-major for the forward
pass, column-major for the backward one), so no kernel ever re-sorts.
`ops.bsmm(x, w)` multiplies; it has a custom VJP, so `jax.grad` works
through it. `impl='auto'` picks the kernel for the platform (the native
C++ kernel on CPU when it was built at install time).
"""),
    code("""
t = topology.make('erdos_renyi', 512, 384, density=0.1, block_size=16, seed=1)
w = t.to_bcsr(jax.random.normal(jax.random.key(0), (t.nnzb, 16, 16)))
print(w.shape, 'blocks stored:', w.nnzb, 'of', t.n_row_blocks * t.n_col_blocks,
      '| arrays:', {k: getattr(w, k).shape for k in ('values', 'col_idx', 'row_ptr', 'col_ptr')})

x = jax.random.normal(jax.random.key(1), (32, 512))
y_sparse = ops.bsmm(x, w)
y_dense = x @ w.to_dense()
print('kernel:', ops.resolve_impl('auto', w.block_size),
      '| max |sparse - dense| =', float(jnp.abs(y_sparse - y_dense).max()))

# Gradients flow through the custom VJP: dL/dx and dL/dvalues (stored blocks only).
loss = lambda x, values: jnp.sum(ops.bsmm(x, w.replace(values=values)) ** 2)
gx, gvalues = jax.grad(loss, argnums=(0, 1))(x, w.values)
gx_ref = jax.grad(lambda x: jnp.sum((x @ w.to_dense()) ** 2))(x)
print('dL/dx matches dense:', bool(jnp.allclose(gx, gx_ref, rtol=1e-4, atol=1e-3)),
      '| dL/dvalues shape:', gvalues.shape)
"""),
    md("""
## 3. A sparse layer inside your own model

`nn.SparseDense` is an ordinary Flax NNX module: put it in any model and
train it with any optax optimiser. Below, a hand-written model mixes a
sparse hidden layer with a dense `nnx.Linear` head, and a hand-written
training step runs on the digits data.
"""),
    code("""
digits = data.load('digits')
print('digits:', digits.x_train.shape, 'train,', digits.x_test.shape, 'test,', digits.num_classes, 'classes')

class MyNet(nnx.Module):
    def __init__(self, rngs):
        t = topology.make('erdos_renyi', 64, 256, density=0.25, seed=0)
        self.hidden = nn.SparseDense(t, rngs=rngs)
        self.head = nnx.Linear(256, 10, rngs=rngs)
    def __call__(self, x):
        return self.head(jax.nn.relu(self.hidden(x)))

model = MyNet(nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

rng = np.random.default_rng(0)
losses = []
for step in range(300):
    idx = rng.integers(0, len(digits.x_train), 64)
    losses.append(float(train_step(model, optimizer, digits.x_train[idx], digits.y_train[idx])))
acc = float((model(digits.x_test).argmax(-1) == digits.y_test).mean())
print(f'loss {losses[0]:.3f} -> {losses[-1]:.3f}; test accuracy {acc:.3f}; '
      f'sparse layer holds {model.hidden.nnz} of {64 * 256} weights')
plt.figure(figsize=(5, 3)); plt.plot(losses); plt.yscale('log')
plt.xlabel('step'); plt.ylabel('training loss'); plt.title('hand-written loop', fontsize=9);
"""),
    md("""
### 3b. Dynamic sparsity in your own loop

The same model can rewire itself while it trains: wrap the optax
optimiser with a dynamic-sparsity method (`sparse_training.set`, `.rigl`,
`.prune`) and use `SparseOptimizer` in place of `nnx.Optimizer`. It finds
the model's `SparseDense` layers by type and rewires them on device inside
the jitted step on the scheduled steps (no retrace). RigL grows where the
loss gradient is largest, so its `update` takes the loss on the batch.
"""),
    code("""
from snn_jax import sparse_training

model = MyNet(nnx.Rngs(0))
before = model.hidden.topology()
sparse_tx = sparse_training.rigl(total_steps=300, update_every=25, zeta=0.3).wrap(optax.adam(3e-3))
optimizer = sparse_training.SparseOptimizer(model, sparse_tx)

def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

@nnx.jit
def rigl_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads, grow_loss=lambda m: loss_fn(m, x, y))
    return loss

rng = np.random.default_rng(0)
for step in range(300):
    idx = rng.integers(0, len(digits.x_train), 64)
    rigl_step(model, optimizer, digits.x_train[idx], digits.y_train[idx])
after = model.hidden.topology()
moved = len(set(zip(after.rows.tolist(), after.cols.tolist())) - set(zip(before.rows.tolist(), before.cols.tolist())))
acc = float((model(digits.x_test).argmax(-1) == digits.y_test).mean())
print(f'{int(optimizer.rewirings.get_value())} RigL updates moved {moved} of {after.nnzb} connections '
      f'(nnz fixed at {model.hidden.nnz}); test accuracy {acc:.3f}')
"""),
    md("""
## 4. `train_and_evaluate`: the training loop with everything around it

`TrainConfig` describes a run in parts -- `data`, `model` (with its
`topology`), `optimizer`, `sparse` (training) and `run` -- each a small
frozen dataclass that checks its own rules; `train_and_evaluate(config,
workdir)` trains it with checkpoints every epoch (a killed run resumes),
metrics files, TensorBoard events, a `summary.json` and a `curves.png`.
`config.override({"run.epochs": 3})` changes leaves by dotted path; the
flags of `experiments/train.py` keep their flat names
(`snn_jax.training.FLAT_NAMES` maps each to its leaf).
"""),
    code("""
static_dir = tempfile.mkdtemp()
static = train_and_evaluate(
    TrainConfig(model=ModelConfig(hidden=(128, 128),
                                  topology=TopologyConfig('erdos_renyi', density=0.1)),
                run=RunConfig(epochs=8, progress=False, snapshot_topologies=True)),
    static_dir)
print('test accuracy', round(static['final_test_acc'], 4), '| weights', static['nnz_params'],
      'of', static['dense_params'], f"({static['density']:.1%})")
display(Image(f'{static_dir}/curves.png'))
"""),
    md("""
## 5. SET: the topology evolves during training

With `sparse_training='set'` (Mocanu et al. 2018, as in Liu et al. 2020)
a fraction `zeta` of each layer's smallest-magnitude weights is removed
after every epoch and the same number regrown at random: the density
stays fixed, the connections move. `snapshot_topologies=True` keeps every
epoch's topology for analysis.
"""),
    code("""
set_dir = tempfile.mkdtemp()
evolved = train_and_evaluate(
    TrainConfig(model=ModelConfig(hidden=(128, 128),
                                  topology=TopologyConfig('erdos_renyi', density=0.1)),
                sparse=sparse_training.SparseTrainingConfig('set', zeta=0.3),
                run=RunConfig(epochs=8, progress=False, snapshot_topologies=True)),
    set_dir)
print('SET test accuracy', round(evolved['final_test_acc'], 4), 'at the same density',
      f"{evolved['density']:.1%}")
"""),
    md("""
## 6. NNSTD: how different are two topologies?

Liu et al. (2020) measure the distance between two sparse networks with
NNSTD (0 = the same graph up to a relabelling of hidden units, 1 = nothing
in common). Both runs above started from the same random topology (same
seed); SET moved it away, epoch by epoch, while the accuracy stayed.
"""),
    code("""
static_snaps = analysis.load_snapshots(static_dir)
set_snaps = analysis.load_snapshots(set_dir)
epochs = sorted(set_snaps)
to_start = [analysis.nnstd(set_snaps[0], set_snaps[e]) for e in epochs]
print('NNSTD(static run final, SET run final) =',
      round(analysis.nnstd(static_snaps[max(static_snaps)], set_snaps[max(set_snaps)]), 3))
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(epochs, to_start, 'o-')
ax.set_xlabel('epoch'); ax.set_ylabel('NNSTD to the initial topology')
ax.set_title('SET moves the topology; the static run stays at 0', fontsize=9);
"""),
    md("""
## Where next

* `experiments/train.py --help` -- the same run from the command line;
  `experiments/evolution.py` for the NNSTD analysis of several SET runs.
* `experiments/reproduce.py --paper=...` -- the four papers' studies.
* `notebooks/kernels.ipynb` -- the kernels: correctness and speed against
  dense.
* `ARCHITECTURE.md` -- where each piece lives and where a new one goes.
"""),
]

KERNELS = [
    md("""
# The block-sparse kernels

`ops.bsmm(x, W)` computes `x @ W` for a `BlockCSR` matrix `W`, with a
custom VJP (`dX = dY Wᵀ` through the column-ordered index arrays, `dW`
only at the stored blocks). Several implementations sit behind it --
`kernels/` holds one per file: XLA gather/scatter (any backend), the
native C++ kernel (CPU, built at install), Pallas for GPU and TPU, and a
dense reference. This notebook checks them against dense and times them
against dense `jnp.dot` at a few densities. The committed benchmark
(`benchmarks/bench_kernels.py`, BUILD_NOTES.md) covers the full grid;
timings here are from whatever machine executed the notebook.
"""),
    code("""
%matplotlib inline
import numpy as np
import jax, jax.numpy as jnp
import matplotlib.pyplot as plt
from jax.test_util import check_grads
from snn_jax import topology, ops
from snn_jax.utils import time_fn
from snn_jax.kernels import native_cpu
print('backend', jax.default_backend(), '| native CPU kernel built:', native_cpu.AVAILABLE)
impls = ['xla', 'dense'] + (['native_cpu'] if native_cpu.AVAILABLE else [])
print('implementations compared:', impls)
"""),
    md("""
## Correctness

Forward, `dX` and `dW` of every implementation against the dense product,
on random topologies at several block sizes; `check_grads` compares the
custom VJP with finite differences.
"""),
    code("""
def random_case(block_size, density, seed):
    t = topology.make('erdos_renyi', 256, 192, density=density, block_size=block_size, seed=seed)
    k1, k2 = jax.random.split(jax.random.key(seed))
    w = t.to_bcsr(jax.random.normal(k1, (t.nnzb, block_size, block_size)))
    x = jax.random.normal(k2, (48, 256))
    return x, w

rows = []
for bs in (1, 8, 32):
    x, w = random_case(bs, 0.2, bs)
    wd = w.to_dense()
    dy = jax.random.normal(jax.random.key(7), (48, 192))
    for impl in impls:
        y, vjp = jax.vjp(lambda x, v: ops.bsmm(x, w.replace(values=v), impl=impl), x, w.values)
        dx, dv = vjp(dy)
        dw_ref = (x.T @ dy)  # dense gradient, sampled at the stored blocks below
        err_dw = float(jnp.abs(jnp.where(wd != 0, w.replace(values=dv).to_dense() - dw_ref, 0)).max())
        rows.append((bs, impl, float(jnp.abs(y - x @ wd).max()),
                     float(jnp.abs(dx - dy @ wd.T).max()), err_dw))
print(f"{'block':>5} {'impl':>11} {'fwd err':>9} {'dX err':>9} {'dW err':>9}")
for r in rows:
    print(f'{r[0]:5d} {r[1]:>11} {r[2]:9.1e} {r[3]:9.1e} {r[4]:9.1e}')
assert max(max(r[2:]) for r in rows) < 1e-3

x, w = random_case(8, 0.3, 3)
check_grads(lambda x, v: ops.bsmm(x, w.replace(values=v)), (x[:4], w.values), order=1,
            modes=['rev'], atol=5e-2, rtol=5e-2)
print('check_grads: custom VJP agrees with finite differences')
"""),
    md("""
## Speed against dense

The ideal sparse time is `density x` the dense time: a kernel at the
dashed line does no work beyond its nonzeros. Measured here for a 2048 x
2048 layer and a batch of 256, block size 32, forward only; `time_fn`
reports the median of repeated, already compiled calls.
"""),
    code("""
n, batch, bs = 2048, 256, 32
x = jax.random.normal(jax.random.key(0), (batch, n))
densities = [0.01, 0.05, 0.1, 0.3]
dense_ms, kernel_ms = [], {impl: [] for impl in impls if impl != 'dense'}
for d in densities:
    t = topology.make('erdos_renyi', n, n, density=d, block_size=bs, seed=0)
    w = t.to_bcsr(jax.random.normal(jax.random.key(1), (t.nnzb, bs, bs)))
    wd = w.to_dense()
    dense_ms.append(time_fn(jax.jit(lambda x, wd: x @ wd), x, wd)['median_ms'])
    for impl in kernel_ms:
        f = jax.jit(lambda x, w, impl=impl: ops.bsmm(x, w, impl=impl))
        kernel_ms[impl].append(time_fn(f, x, w)['median_ms'])
print('density  dense ms  ' + '  '.join(f'{i} ms' for i in kernel_ms))
for k, d in enumerate(densities):
    print(f'{d:7.2f}  {dense_ms[k]:8.2f}  ' + '  '.join(f'{kernel_ms[i][k]:{len(i)+3}.2f}' for i in kernel_ms))

fig, ax = plt.subplots(figsize=(5.5, 3.6))
for impl, ms in kernel_ms.items():
    ax.plot(densities, np.array(dense_ms) / np.array(ms), 'o-', label=impl)
ax.plot(densities, 1 / np.array(densities), 'k--', label='ideal 1/density')
ax.axhline(1, color='grey', lw=0.8)
ax.set_xscale('log'); ax.set_yscale('log')
ax.set_xlabel('density'); ax.set_ylabel('speedup over dense (dense ms / kernel ms)')
ax.set_title(f'{n}x{n}, batch {batch}, block {bs}, forward', fontsize=9)
ax.legend(fontsize=8);
"""),
    md("""
Read the plot as: above 1 the sparse kernel beats dense `jnp.dot`; the
closer to the dashed line, the closer to the work of the nonzeros alone.
BUILD_NOTES.md lists the committed ratios for the whole grid, backward
passes and block size 1, with the targets they meet or miss.
"""),
]

NOTEBOOKS = {"quickstart": QUICKSTART, "kernels": KERNELS}


def build(name: str, timeout: int = 900) -> str:
  nb = nbformat.v4.new_notebook()
  nb.cells = NOTEBOOKS[name]
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                               "language": "python"}
  root = os.path.dirname(HERE)
  NotebookClient(nb, timeout=timeout, kernel_name="python3",
                 resources={"metadata": {"path": root}}).execute()
  path = os.path.join(HERE, f"{name}.ipynb")
  nbformat.write(nb, path)
  return path


if __name__ == "__main__":
  for name in sys.argv[1:] or list(NOTEBOOKS):
    print("wrote", build(name))
