"""Task statuses: what a runtime keeps of each task it runs, for following it by id.

A runtime's :class:`StatusBook` holds its runs, not its tasks: the runs still going, and the
runs whose tasks are among the last ``keep`` to have ended. A :class:`TaskStatus` is made
from a run only when asked for, and a run finds a task by id only then, so keeping statuses
costs the hot path two steps per list, none per task.
"""

from __future__ import annotations

import threading
from collections import deque
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
    :ivar ended_at: Unix time it ended; ``None`` before, or if it never started
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
    def task_count(self) -> int: ...

    def index_of(self, task_id: str) -> int | None:
        """Return where the task ``task_id`` is in the run; ``None`` if it is not there."""
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
        self._live: dict[Tracked, None] = {}  # an ordered set, oldest first
        self._ended: deque[Tracked] = deque()  # oldest first
        self._ended_tasks = 0
        self._forgotten = 0  # how many tasks of the oldest ended run are forgotten already

    def scheduled(self, run: Tracked) -> None:
        """Follow the tasks of ``run`` from now on: they are pending."""
        with self._lock:
            self._live[run] = None

    def ended(self, run: Tracked) -> None:
        """Keep the tasks of ``run`` among the ended ones, forgetting the oldest beyond ``keep``."""
        with self._lock:
            if run not in self._live:  # ended already: a run ends once
                return
            del self._live[run]
            if not self._keep:
                return
            self._ended.append(run)
            self._ended_tasks += run.task_count
            while self._ended_tasks - self._forgotten > self._keep:
                oldest = self._ended[0]
                over = self._ended_tasks - self._forgotten - self._keep
                if over >= oldest.task_count - self._forgotten:
                    self._ended.popleft()
                    self._ended_tasks -= oldest.task_count
                    self._forgotten = 0
                else:
                    self._forgotten += over

    def status(self, task_id: str) -> TaskStatus | None:
        """Return the status of the task ``task_id``; ``None`` if unknown or forgotten."""
        found = self._find(task_id)
        return None if found is None else found[0].status(found[1])

    def statuses(self) -> list[TaskStatus]:
        """Return every status kept, newest first (by when the task was scheduled)."""
        with self._lock:
            runs = [*self._live, *reversed(self._ended)]
            forgotten, oldest = self._forgotten, self._ended[0] if self._ended else None
        statuses = [
            run.status(index)
            for run in runs
            for index in range(forgotten if run is oldest else 0, run.task_count)
        ]
        statuses.sort(key=lambda status: status.created_at, reverse=True)
        return statuses

    def cancel(self, task_id: str) -> bool:
        """Cancel the task ``task_id`` if it is pending or running; ``False`` otherwise."""
        with self._lock:
            live = list(self._live)
        for run in live:
            index = run.index_of(task_id)
            if index is not None:
                return run.cancel_task(index)
        return False

    def _find(self, task_id: str) -> tuple[Tracked, int] | None:
        with self._lock:
            runs = [*self._live, *self._ended]
            forgotten, oldest = self._forgotten, self._ended[0] if self._ended else None
        for run in runs:
            index = run.index_of(task_id)
            if index is not None and not (run is oldest and index < forgotten):
                return run, index
        return None
