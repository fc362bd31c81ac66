"""The code that runs inside worker processes (and, for PoolExecutor, wherever its pool runs)."""

from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection

from .._call import run_to_end
from .._carrier import Carrier, activated
from .._progress import Progress, use_channel
from ._lifeline import watch
from ._logs import PipeHandler
from ._pickling import Outcome


def initialize(
    log_connection: Connection, log_level: int, lifeline: Connection, leftovers: str | None
) -> None:
    """Set up a fresh worker: it leads a process group of its own and stops with the server,
    its output is line-buffered, its log records go to the parent, and it ignores Ctrl-C.

    :param leftovers: what the worker removes if the server dies (see :func:`watch`)
    """
    # A group of its own, so that killing the group stops the processes a task started too
    # (its subprocesses and multiprocessing children), not only the worker.
    os.setpgid(0, 0)
    watch(lifeline, leftovers)
    # The server handles Ctrl-C by draining its tasks, so a worker must not die of it
    # mid-task (in its own group, a terminal's Ctrl-C no longer reaches it; a kill may).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A task's output then reaches the parent's terminal as it is written, not at exit.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    root = logging.getLogger()
    # Handlers a preloaded module installed would print records the parent prints too.
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    global _to_parent
    _to_parent = PipeHandler(log_connection)
    root.addHandler(_to_parent)
    root.setLevel(log_level)


#: The pipe to the parent (log records, and the progress of the task running here).
_to_parent: PipeHandler | None = None


def run_payload(
    payload: bytes, task_id: str | None = None, carrier: Carrier | None = None
) -> Outcome:
    """Unpickle a task's call, run it, and pack what it returned or raised.

    :param task_id: the task's id: what it says with ``set_progress`` goes to the parent,
        tagged with it, at once
    :param carrier: the trace context the task runs in (see :mod:`offload._carrier`)
    """
    if task_id is None or _to_parent is None:
        send: Callable[[Progress], None] = _dropped
    else:
        send = partial(_to_parent.send_progress, task_id)
    try:
        func, args, kwargs = pickle.loads(payload)
        with use_channel(send), activated(carrier or {}):
            result = run_to_end(func, args, kwargs)
    except BaseException as exc:
        return _raised(exc)
    try:
        return ("returned", pickle.dumps(result, pickle.HIGHEST_PROTOCOL), "", "", "")
    except Exception as exc:
        return ("unpicklable", None, _type_name(result), f"{type(exc).__name__}: {exc}", "")


def _dropped(progress: Progress) -> None:
    """Where progress goes in a pool of the app's own: it has no pipe to the server."""


def _raised(exc: BaseException) -> Outcome:
    text = "".join(traceback.format_exception(exc))
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    try:
        data: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = None
    return ("raised", data, _type_name(exc), message, text)


def _type_name(obj: object) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
