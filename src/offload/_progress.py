"""Progress: what a running task says of how far it has got, from wherever it runs.

Inside a task, :func:`set_progress` finds where to send what it is told:

- on the event loop or in a thread, through a context variable the runner sets around each
  task (threads get a copy of the context);
- in a worker process, or on a Dask worker, through the channel that executor opened for the
  task (:func:`use_channel`), which carries it to the server while the task runs, where
  :func:`deliver` hands it to the task's run through the route its executor opened
  (:func:`open_route`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from ._checks import is_number
from ._exceptions import ConfigError, OffloadError


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running task has got: ``done`` out of ``total`` (if known), and a message.

    :raises ConfigError: if ``done`` is negative, or ``total`` is not a number above 0
    """

    done: float
    total: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not is_number(self.done) or self.done < 0:
            raise ConfigError(f"progress done must be a number >= 0, got {_kind(self.done)}")
        if self.total is not None and (not is_number(self.total) or self.total <= 0):
            raise ConfigError(
                f"progress total must be a number > 0 or None, got {_kind(self.total)}"
            )
        if self.message is not None and not isinstance(self.message, str):
            raise ConfigError(
                f"progress message must be a string or None, got a {type(self.message).__name__}"
            )


def _kind(value: object) -> str:
    # A number is no secret and says what was wrong with it; anything else only its type.
    return repr(value) if is_number(value) else f"a {type(value).__name__}"


class ProgressSink(Protocol):
    """Where the progress of one task of a run goes: the run."""

    def record_progress(self, index: int, progress: Progress) -> None: ...


#: The run and index of the task running in this context, set by the runner around each task.
current_task: ContextVar[tuple[ProgressSink, int] | None] = ContextVar(
    "offload_current_task", default=None
)

_channel = threading.local()  # in a worker process: how to send this thread's task's progress
_routes: dict[str, tuple[ProgressSink, int]] = {}  # task id -> its run, for progress from afar
# Routes of tasks that ended lately. A worker's last progress travels apart from its result
# (a log pipe, a cluster topic), so it may arrive just after the task has ended.
_ended_routes: OrderedDict[str, tuple[ProgressSink, int]] = OrderedDict()
ENDED_ROUTES = 256
_routes_lock = threading.Lock()


def set_progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Record how far the running task has got, from inside the task, on any executor.

    ``offload.status(id).progress`` then shows it, while the task runs; from a worker
    process it reaches the server as soon as it is set.

    :param done: the work done so far, in any unit (items, bytes, percent)
    :param total: the work in all, if known
    :param message: a few words on the step under way
    :raises OffloadError: if no background task is running here
    :raises ConfigError: if ``done`` is negative or ``total`` is not above 0
    """
    progress = Progress(done, total, message)
    running = current_task.get()
    if running is not None:
        sink, index = running
        sink.record_progress(index, progress)
        return
    send: Callable[[Progress], None] | None = getattr(_channel, "send", None)
    if send is None:
        raise OffloadError(
            "set_progress() was called outside a background task; call it from inside a "
            "task's function while it runs (on any executor), not from the endpoint"
        )
    send(progress)


@contextmanager
def use_channel(send: Callable[[Progress], None]) -> Iterator[None]:
    """In a worker: send the progress set by the task run in this thread with ``send``."""
    _channel.send = send
    try:
        yield
    finally:
        _channel.send = None


@contextmanager
def open_route(task_id: str) -> Iterator[None]:
    """On the server, while an executor runs a task elsewhere: let :func:`deliver` take the
    progress that arrives for ``task_id`` to the task's run (the one running in this context)."""
    running = current_task.get()
    if running is None:  # run outside a runner (an executor used on its own): nowhere to go
        yield
        return
    _routes[task_id] = running
    try:
        yield
    finally:
        with _routes_lock:
            _routes.pop(task_id, None)
            _ended_routes[task_id] = running
            if len(_ended_routes) > ENDED_ROUTES:
                _ended_routes.popitem(last=False)


def deliver(task_id: str, progress: Progress) -> None:
    """Hand progress that arrived from a worker to its task's run; any thread may call it.

    Progress of a task unknown here, or long ended, is dropped.
    """
    route = _routes.get(task_id)
    if route is None:
        with _routes_lock:
            route = _ended_routes.get(task_id)
    if route is not None:
        sink, index = route
        sink.record_progress(index, progress)
