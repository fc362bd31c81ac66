"""Hooks: callbacks on every task's way — scheduled, started, ended — and on worker restarts.

One mechanism for what watches tasks: the config's ``on_report``, metrics
(:func:`offload.metrics.install`), and an app's own (a Sentry breadcrumb, a structlog
binding). Hooks are added to one runtime (:meth:`Runtime.add_hooks`) or to every runtime of
the process (:func:`add_hooks`). With none, the runner skips them at the cost of one test per
task.
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Generic, TypeVar

from ._call import Call
from ._report import TaskReport

logger = logging.getLogger("offload")

T = TypeVar("T")


class TaskHooks:
    """Callbacks on every task's way. Override the ones you need; each is called on the
    event loop that runs the task, must be quick, and must not raise (what it raises is
    logged and dropped)."""

    #: Hooks added for every runtime (:func:`add_hooks`) hear of a start by this order,
    #: lowest first, then in the order they were added; of an end, in the reverse order. So
    #: hooks that make something current while a task runs (a span) nest the same way
    #: whichever was installed first.
    order: int = 0

    def scheduled(self, task: Call, executor: str) -> None:
        """``task`` was scheduled to run on ``executor``: its list was awaited or handed over."""

    def started(self, task: Call, executor: str, attempt: int) -> None:
        """An attempt of ``task`` (1 for the first) started."""

    def ended(self, report: TaskReport) -> None:
        """A task ended, however it ended (``report.status``). Hooks are told in the reverse
        of the order they were told it started, so that what each made current then is
        undone in turn."""

    def cut_short(self, task: Call) -> None:
        """``task`` will end ``skipped`` (:meth:`ended` follows) because something outside its
        list stopped the list: its caller was cancelled, its runtime drained it at
        shutdown, or its event loop ended. Not called for a task its list's error policy
        skipped, nor for one ``offload.cancel()`` cancelled."""

    def worker_restarted(self, executor: str, reason: str) -> None:
        """A worker process of ``executor`` was replaced: ``"crash"``, ``"timeout"`` (a
        timeout or a cancel killed it) or ``"recycle"`` (``max_tasks_per_child``)."""


class TaskState(Generic[T]):
    """What a hook keeps of a task between its calls (a span, a start time), by task id.

    Kept in the context of the run that runs the task, where the hooks of its start and its
    end are called: two runs of the same task object at once (a task shared by the responses
    of two requests) keep theirs apart, and a hook needs no lock.
    """

    def __init__(self, name: str) -> None:
        self._by_id: ContextVar[dict[str, T]] = ContextVar(name)

    def put(self, task_id: str, value: T) -> None:
        """Keep ``value`` for the task ``task_id`` of the current run."""
        kept = self._by_id.get(None)
        if kept is None:
            kept = {}
            self._by_id.set(kept)
        kept[task_id] = value

    def get(self, task_id: str) -> T | None:
        """Return what is kept for the task ``task_id`` of the current run, if anything."""
        kept = self._by_id.get(None)
        return None if kept is None else kept.get(task_id)

    def pop(self, task_id: str) -> T | None:
        """Return what is kept for the task ``task_id`` of the current run, and forget it."""
        kept = self._by_id.get(None)
        return None if kept is None else kept.pop(task_id, None)


class ReportHook(TaskHooks):
    """The config's ``on_report``, as a hook."""

    def __init__(self, on_report: object) -> None:
        self.on_report = on_report

    def ended(self, report: TaskReport) -> None:
        self.on_report(report)  # type: ignore[operator]  # checked callable by the config

    def __repr__(self) -> str:
        return f"on_report hook {self.on_report!r}"


_lock = threading.Lock()
_global: tuple[TaskHooks, ...] = ()  # replaced, never changed in place: readers need no lock


def add_hooks(hooks: TaskHooks) -> None:
    """Add ``hooks`` for every task of every runtime of this process."""
    global _global
    if not isinstance(hooks, TaskHooks):
        raise TypeError(f"hooks must be an offload.TaskHooks, got a {type(hooks).__name__}")
    with _lock:
        if hooks not in _global:
            _global = tuple(sorted((*_global, hooks), key=lambda added: added.order))


def remove_hooks(hooks: TaskHooks) -> None:
    """Stop calling ``hooks`` added with :func:`add_hooks`; unknown hooks are ignored."""
    global _global
    with _lock:
        _global = tuple(added for added in _global if added is not hooks)


def global_hooks() -> tuple[TaskHooks, ...]:
    """Return the hooks added for every runtime."""
    return _global


def call_each(hooks: tuple[TaskHooks, ...], method: str, *args: object) -> None:
    """Call ``method`` of every hook with ``args``; log and drop what one raises."""
    for hook in hooks:
        try:
            getattr(hook, method)(*args)
        except Exception:
            logger.exception("%r raised in %s()", hook, method)


def worker_restarted(executor: str, reason: str) -> None:
    """Tell every process-wide hook that a worker of ``executor`` was replaced."""
    if _global:
        call_each(_global, "worker_restarted", executor, reason)
