"""Tasks that leave a mark for the Lilya, Ravyn and Esmerald tests, and the wait for one.

A mark is a file named by the task that holds the pid of the process that ran it, so a test
sees that a task ran, and where. The functions live at module level, so that worker
processes can import them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def write_mark(directory: str, name: str) -> None:
    """Leave the mark ``name`` in ``directory``: a sync task."""
    _write(directory, name)


async def write_mark_async(directory: str, name: str) -> None:
    """Leave the mark ``name`` in ``directory``: an async task."""
    _write(directory, name)


def _write(directory: str, name: str) -> None:
    # Written whole, then renamed: a waiting test never reads half a mark.
    partial = Path(directory, f".{name}.partial")
    partial.write_text(str(os.getpid()))
    partial.replace(Path(directory, name))


def wait_for_mark(directory: Path, name: str, timeout: float = 30) -> int:
    """Wait until the mark ``name`` is in ``directory`` and return the pid it holds.

    :raises AssertionError: if it is not there within ``timeout`` seconds, naming the marks
        that are
    """
    path = directory / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            found = sorted(mark.name for mark in directory.iterdir())
            raise AssertionError(f"no mark {name!r} within {timeout}s; found {found}")
        time.sleep(0.01)
    return int(path.read_text())
