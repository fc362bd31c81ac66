"""Task statuses: what a runtime keeps of each task it runs, for following it by id.

A runtime's :class:`StatusBook` holds an entry per pending or running task and a bounded
list of ended ones. An entry is only the task's run and its place in it: a
:class:`TaskStatus` is made from the run when asked for, so keeping statuses costs the hot
path a dict entry per task and nothing more.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._progress import Progress

State = Literal["pending", "running", "succeeded", "failed", "timed_out", "skipped", "cancelled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatus:
    """Where one task is, as its runtime knows it.

    :ivar id: the task's id
    :ivar name: the task's name
    :ivar executor: the name of the executor that runs (or ran) it
    :ivar state: ``"pending"``, ``"running"``, or how it ended: ``"succeeded"``,
        ``"failed"``, ``"timed_out"``, ``"skipped"`` or ``"cancelled"``
    :ivar progress: what the task last said with :func:`offload.set_progress`, if anything
    :ivar attempts: how many times it has been started
    :ivar created_at: Unix time it was scheduled
    :ivar started_at: Unix time its first attempt started; ``None`` before
    :ivar ended_at: Unix time it ended; ``None`` before
    :ivar error: ``"ExceptionType: message"`` of a failed or timed-out task, else ``None``
    :ivar result: what the task returned, once it has succeeded
    """

    id: str
    name: str
    executor: str
    state: State
    progress: Progress | None = None
    attempts: int = 0
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    result: Any = None


class Tracked(Protocol):
    """A run whose tasks a status book follows."""

    @property
    def task_ids(self) -> Sequence[str]:
        """The ids of the run's tasks, in order."""
        ...

    def status(self, index: int) -> TaskStatus:
        """Return the status of the run's task at ``index``."""
        ...

    def cancel_task(self, index: int) -> bool:
        """Cancel the run's task at ``index``, from any thread; ``False`` if it has ended."""
        ...


class StatusBook:
    """The statuses a runtime keeps: every pending and running task, and the last ``keep``
    tasks that ended (the oldest forgotten first).

    Safe to use from any thread: the server's loop records, a sync endpoint may read.
    """

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._live: dict[str, tuple[Tracked, int]] = {}
        self._ended: OrderedDict[str, tuple[Tracked, int]] = OrderedDict()

    def scheduled(self, run: Tracked) -> None:
        """Follow the tasks of ``run`` from now on: they are pending."""
        with self._lock:
            live = self._live
            for index, task_id in enumerate(run.task_ids):
                live[task_id] = (run, index)

    def ended(self, run: Tracked) -> None:
        """Move the tasks of ``run`` to the ended ones, forgetting the oldest beyond ``keep``."""
        with self._lock:
            live, ended, keep = self._live, self._ended, self._keep
            for task_id in run.task_ids:
                entry = live.pop(task_id, None)
                if entry is not None and keep:
                    ended[task_id] = entry
            while len(ended) > keep:
                ended.popitem(last=False)

    def status(self, task_id: str) -> TaskStatus | None:
        """Return the status of the task ``task_id``; ``None`` if unknown or forgotten."""
        with self._lock:
            entry = self._live.get(task_id) or self._ended.get(task_id)
        if entry is None:
            return None
        run, index = entry
        return run.status(index)

    def statuses(self) -> list[TaskStatus]:
        """Return every status kept, newest first (by when the task was scheduled)."""
        with self._lock:
            entries = [*self._ended.values(), *self._live.values()]
        statuses = [run.status(index) for run, index in entries]
        statuses.sort(key=lambda status: status.created_at, reverse=True)
        return statuses

    def cancel(self, task_id: str) -> bool:
        """Cancel the task ``task_id`` if it is pending or running; ``False`` otherwise."""
        with self._lock:
            entry = self._live.get(task_id)
        if entry is None:
            return False
        run, index = entry
        return run.cancel_task(index)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live) + len(self._ended)
