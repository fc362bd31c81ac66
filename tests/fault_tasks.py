"""Module-level tasks that misbehave, for the fault-injection, property and soak tests.

Worker processes import this module by name (pytest puts ``tests/`` on ``sys.path``, and
workers inherit the parent's ``sys.path``). Tasks leave their marks in files, since a
worker's memory is gone once it dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path


class TaskFailed(Exception):
    """What a task that fails on purpose raises."""


class NeedsArguments(Exception):
    """Pickles, but cannot be unpickled: its ``__init__`` takes two arguments, and pickle
    rebuilds an exception from its ``args`` (one message). Such an exception, raised in a
    worker, breaks a plain ``ProcessPoolExecutor`` for good."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def mark(directory: str, name: str) -> str:
    """Create the file ``name`` in ``directory``; fail if it exists (a task ran twice)."""
    Path(directory, name).touch(exist_ok=False)
    return name


def sleep_then_mark(seconds: float, directory: str, name: str) -> str:
    time.sleep(seconds)
    return mark(directory, name)


def crash(how: str) -> None:
    """Make the worker die: ``"sigkill"``, ``"exit"`` (``os._exit``) or ``"segfault"``."""
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "exit":
        os._exit(70)
    elif how == "segfault":
        ctypes.string_at(0)
    raise AssertionError(f"unknown crash {how!r}")


def crash_once(marker: str) -> str:
    """Kill the worker the first time (leaving ``marker``); succeed the next time."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os._exit(70)
    return "survived"


def fail_once(marker: str) -> str:
    """Raise the first time (leaving ``marker``); succeed the next time."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise TaskFailed("first attempt")
    return "second attempt"


def hang(pid_file: str) -> None:
    """Write this process's pid, then spin in pure Python: only a kill stops it."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        pass


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def raise_needs_arguments() -> None:
    raise NeedsArguments(7, "needs two arguments")


def return_unpicklable() -> threading.Lock:
    return threading.Lock()


def exit_task(code: int) -> None:
    sys.exit(code)


def interrupt_task() -> None:
    raise KeyboardInterrupt


def fail(message: str) -> None:
    raise TaskFailed(message)


def succeed() -> str:
    return "ok"


def pid() -> int:
    return os.getpid()
