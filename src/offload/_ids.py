"""Task ids: unique strings of 32 hex characters, cheap enough to give every task one.

A random half, drawn once per process (and again in a forked child), and a counter: unique
across the processes of a server (which may share a journal) without a random draw per task.
"""

from __future__ import annotations

import itertools
import os


def _reset() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


_prefix = ""
_counter = itertools.count()
_reset()
os.register_at_fork(after_in_child=_reset)


def new_id() -> str:
    """Return an id no other task of any process has."""
    return f"{_prefix}{next(_counter):016x}"
