"""Module-level task functions, importable by worker processes, for the executor suite."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel


class TaskFailed(Exception):
    pass


def write(path: str, *args: object, **kwargs: object) -> str:
    Path(path).write_text(f"{args!r} {sorted(kwargs.items())!r}")
    return "written"


async def write_async(path: str, *args: object, **kwargs: object) -> str:
    await anyio.lowlevel.checkpoint()
    return write(path, *args, **kwargs)


def fail(message: str) -> None:
    raise TaskFailed(message)


async def fail_async(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise TaskFailed(message)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


async def sleep_async(seconds: float) -> None:
    await anyio.sleep(seconds)
