"""The house reads one way: every snn_jax subpackage imports only from
the floors below it (ARCHITECTURE.md), so there is no import circle.
Checked on the source (every import statement, including those inside
functions), not by importing."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Floor of each subpackage; a module may import its own package and lower
# floors. ``topology`` may build a BlockCSR (Topology.to_bcsr), so the
# format sits below it; ``kernels`` is installed as snn_jax.kernels.
FLOORS = {
    "utils": 0, "sparse": 1, "data": 1,
    "topology": 2, "kernels": 2,
    "ops": 3, "conv": 3, "analysis": 3,
    "nn": 4,
    "sparse_training": 5,
    "training": 6,
    "studies": 7, "bench": 7, "graph_challenge": 7,
    "reproduce": 8,
}


def _sources():
  for base, pkg_dir in (("snn_jax", os.path.join(ROOT, "snn_jax")),
                        ("kernels", os.path.join(ROOT, "kernels"))):
    for dirpath, _, files in os.walk(pkg_dir):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(dirpath, f)
          rel = os.path.relpath(path, pkg_dir).split(os.sep)
          if base == "kernels":
            yield path, "kernels"
          elif len(rel) > 1 or rel[0] != "__init__.py":
            yield path, rel[0][:-3] if len(rel) == 1 else rel[0]


def _imported_packages(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "snn_jax":
        names = [f"snn_jax.{a.name}" for a in node.names]
      else:
        names = [node.module]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    for n in names:
      parts = n.split(".")
      if parts[0] == "snn_jax" and len(parts) > 1:
        yield parts[1], node.lineno


def test_every_subpackage_has_a_floor():
  packages = {pkg for _, pkg in _sources()}
  assert packages <= set(FLOORS), packages - set(FLOORS)


@pytest.mark.parametrize("path,package", sorted(_sources()),
                         ids=lambda v: os.path.relpath(v, ROOT)
                         if isinstance(v, str) and os.sep in v else v)
def test_imports_only_go_down(path, package):
  upward = [(target, line) for target, line in _imported_packages(path)
            if target != package and target in FLOORS
            and FLOORS[target] >= FLOORS[package]]
  assert not upward, (f"{os.path.relpath(path, ROOT)} ({package}, floor "
                      f"{FLOORS[package]}) imports {upward}")


def test_moved_names_say_where_they_went():
  from snn_jax import sparse_training, training
  with pytest.raises(AttributeError, match="snn_jax.studies.prune_and_retrain"):
    sparse_training.prune_and_retrain
  with pytest.raises(AttributeError, match="snn_jax.studies.run_sweep"):
    training.run_sweep
  with pytest.raises(AttributeError, match="has no attribute 'nope'"):
    training.nope
