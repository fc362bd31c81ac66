"""Task functions for the Litestar tests, at module level so that worker processes can import
them by name; and a barrier that only lets tasks through once all of them run at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import anyio.lowlevel


def write_mark(path: str, text: str) -> None:
    """Sync: leave ``text`` in the file ``path``."""
    Path(path).write_text(text)


async def write_mark_async(path: str, text: str) -> None:
    """Async: leave ``text`` in the file ``path``."""
    await anyio.Path(path).write_text(text)


def write_pid(path: str) -> None:
    """Leave the id of the process that runs it in the file ``path``."""
    Path(path).write_text(str(os.getpid()))


def wait_for(released: threading.Event, path: str) -> None:
    """Sync: wait, bounded, until ``released`` is set, then leave a mark in ``path``."""
    if released.wait(timeout=10):
        Path(path).write_text("released")


class Barrier:
    """Lets ``parties`` tasks through once all have arrived: tasks run one by one time out.

    One per event loop: its event belongs to the loop (asyncio or trio) that made it.
    """

    def __init__(self, parties: int, timeout: float = 2.0) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self.all_arrived = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_arrived.set()
        with anyio.fail_after(self.timeout):
            await self.all_arrived.wait()
