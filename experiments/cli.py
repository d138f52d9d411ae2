"""How every binary starts and fails: ``cli.run(main)`` instead of
``app.run(main)``.

* A usage error (``app.UsageError`` raised by ``main``: bad flag values,
  missing data, a workdir holding another run) prints one line,
  ``error: <message>``, and a pointer to ``--help``, and exits 2 -- absl
  would print the whole module docstring first. ``--help`` still shows it.
* Ctrl-C prints one line instead of a traceback and exits 130; a binary
  that knows where its run will resume says so by raising
  :class:`Interrupted` with that message.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app


class Interrupted(Exception):
  """Raised by a binary's ``main`` on Ctrl-C, with the line to print."""


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` with the error handling of the module docstring."""

  def wrapped(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      print(f"error: {e}\n(run with --help to see the flags)", file=sys.stderr)
      sys.exit(2)
    except Interrupted as e:
      print(f"\ninterrupted: {e}", file=sys.stderr)
      sys.exit(130)
    except KeyboardInterrupt:
      print("\ninterrupted", file=sys.stderr)
      sys.exit(130)

  app.run(wrapped)
