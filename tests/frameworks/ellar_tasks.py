"""The tasks of the Ellar app the tests serve (tests/frameworks/ellar_testapp.py).

Each leaves a file named after it in the folder ``marks``, holding the pid of the process
that ran it. They live in a module of their own, which imports no Ellar, so that worker
processes can import them cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio


def mark(marks: str, name: str) -> None:
    """Leave the file ``name`` in the folder ``marks``, holding this process's pid."""
    Path(marks, name).write_text(str(os.getpid()))


async def mark_async(marks: str, name: str) -> None:
    await anyio.Path(marks, name).write_text(str(os.getpid()))


async def mark_when_told(marks: str, name: str) -> None:
    """Wait (10 s at most) for the test to create the file ``go``, then leave the mark."""
    with anyio.move_on_after(10):
        # Polled: the signal is a file the test makes, which no anyio.Event can stand for.
        while not await anyio.Path(marks, "go").exists():  # noqa: ASYNC110
            await anyio.sleep(0.01)
        await mark_async(marks, name)
