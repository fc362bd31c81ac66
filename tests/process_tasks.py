"""Module-level task functions for the process and pool executor tests.

Worker processes import this module by name, so it sits on ``sys.path`` (pytest puts
``tests/`` there, and workers inherit the parent's ``sys.path``).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: The process that imported this module: a worker's fork server when it was preloaded.
IMPORTED_IN = os.getpid()

#: How many times a CountingArg was pickled in this process.
pickled = 0


class CountingArg:
    """An argument that counts how often it is pickled."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[type[CountingArg], tuple[int]]:
        global pickled
        pickled += 1
        return CountingArg, (self.value,)


class TwoArgError(Exception):
    """An exception that pickles but cannot be unpickled: its __init__ needs two arguments."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""


def add(a: int, b: int) -> int:
    return a + b


def unwrap(arg: CountingArg) -> int:
    return arg.value


async def add_async(a: int, b: int) -> tuple[int, str]:
    await asyncio.sleep(0)
    return a + b, type(asyncio.get_running_loop()).__name__


def pid() -> int:
    return os.getpid()


def parent_pid() -> int:
    return os.getppid()


def imported_in() -> tuple[int, int]:
    """Return which process imported this module, and this worker's parent."""
    return IMPORTED_IN, os.getppid()


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def spin_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    while True:  # pure Python: no signal or cancellation point can stop it but a kill
        pass


def crash(how: str) -> None:
    if how == "exit":
        os._exit(1)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        ctypes.string_at(0)
    raise AssertionError(f"unknown crash {how!r}")


def fail(message: str) -> None:
    raise ValueError(message)


def fail_unpicklable_exception() -> None:
    error = LockedError("holds a lock")
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    raise error


def fail_two_arg_error() -> None:
    raise TwoArgError(7, "needs two arguments")


def exit_worker() -> None:
    sys.exit(3)


def return_lock() -> threading.Lock:
    return threading.Lock()


def chatter(tag: str) -> None:
    print(f"stdout {tag}")
    print(f"stderr {tag}", file=sys.stderr)
    logging.getLogger("process_tasks").warning("log %s from %d", tag, os.getpid())


def interrupt_self() -> str:
    """Send this worker the SIGINT a terminal's Ctrl-C sends the whole process group."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # time for the signal to arrive, and to interrupt, were it not ignored
    return "still running"


def _sleep_forever() -> None:
    while True:
        time.sleep(1)


def start_grandchild_then_hang(pid_file: str, how: str) -> None:
    """Start a child process that inherits this worker's pipes, write its pid, and hang."""
    if how == "subprocess":
        # close_fds=False: the grandchild holds every pipe of the worker, its log pipe too.
        child_pid = subprocess.Popen(["sleep", "100"], close_fds=False).pid
    else:  # a fork child holds every pipe of the worker, as multiprocessing users get it
        child = multiprocessing.get_context("fork").Process(target=_sleep_forever)
        child.start()
        child_pid = child.pid or 0
    Path(pid_file).write_text(str(child_pid))
    _sleep_forever()


def report_progress_then_wait(go_on: str) -> None:
    """Say how far it has got, wait until the file ``go_on`` exists, then say it is done."""
    import offload

    offload.set_progress(5, 7, "halfway")
    while not Path(go_on).exists():
        time.sleep(0.01)
    offload.set_progress(7, 7, "done")


def current_trace_ids() -> tuple[int, int]:
    """The trace and span id current in this process, as OpenTelemetry sees them here."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context.trace_id, context.span_id
