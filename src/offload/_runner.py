"""TaskRun: runs a resolved task list — order, error policy, timeouts, retries, reports —
and answers for its tasks while it runs: their status, progress and cancellation."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus as StartedStatus
from anyio.lowlevel import EventLoopToken, current_token

from ._call import Call
from ._exceptions import NotPicklable, OffloadError, TaskTimeout
from ._hooks import call_each
from ._options import ExecutorSpec
from ._progress import Progress, current_task
from ._report import Status, TaskReport
from ._status import State, TaskStatus
from .executors._futures import call_soon

if TYPE_CHECKING:
    from ._config import Concurrency, OnError
    from ._runtime import Runtime
    from .executors._base import Executor

logger = logging.getLogger("offload")

#: How one task ended, until a report is made of it: the fields of a :class:`TaskReport`
#: after its name and executor (status, error, started_at, duration, attempts).
Outcome = tuple[Status, BaseException | None, float | None, float, int]
_SKIPPED: Outcome = ("skipped", None, None, 0.0, 0)


class PlannedTask(Call, Protocol):
    """A task whose executor has been chosen: what the runner needs of it."""

    @property
    def runs_on(self) -> ExecutorSpec | None:
        """The executor chosen for the task, by name or as an instance; ``None`` for the
        config's."""
        ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def retries(self) -> int | None: ...


class TaskRun:
    """One run of a task list, each task on the executor chosen for it, with one runtime.

    :param runtime: the runtime whose executors run the tasks, and whose config applies
    :param on_error: the error policy; the config's when ``None``
    :param concurrency: ``"sequential"`` or ``"group"``; the config's when ``None``
    :ivar reports: after :meth:`run`, one report per task, in task order
    """

    def __init__(
        self,
        tasks: Sequence[PlannedTask],
        runtime: Runtime,
        *,
        on_error: OnError | None = None,
        concurrency: Concurrency | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config = runtime.config
        self.tasks = tuple(tasks)
        self.on_error = on_error or config.on_error
        self.concurrency = concurrency or config.concurrency
        # Each task's executor was chosen when it joined its list, but for the config's.
        default, executor = runtime.default_executor, runtime.executor
        self.executors = [
            default(task.is_async) if task.runs_on is None else executor(task.runs_on)
            for task in self.tasks
        ]
        self._hooks = runtime.hooks
        # Last started, first ended: a hook that made something current as the task started
        # (a span) undoes it in the reverse order, as nested context managers do.
        self._hooks_ending = self._hooks[::-1]
        # How each task ended; a report is made of it only when asked for (or for a hook).
        self._outcomes: list[Outcome | TaskReport | None] = [None] * len(self.tasks)
        self._reports: list[TaskReport] | None = None
        self._ended = False
        self._first_error: BaseException | None = None
        self._ready: set[Executor] = set()  # the executors this run knows to be started
        self._cancel_group: anyio.CancelScope | None = None
        # Where the run runs, so that a closing runtime (or a task's cancel) reaches it from
        # any thread; a new scope after a task's own cancel, for the rest of the list.
        self._scope: anyio.CancelScope | None = None
        self._token: EventLoopToken | None = None
        self._thread = 0
        self._drained = False  # cancelled by its closing runtime: the rest does not run
        # What a status is made of, while the tasks run; what most runs never need is made
        # only when first needed.
        self._created_at = time.time()
        self._started: dict[int, float] = {}
        self._retried: dict[int, int] | None = None  # attempts, of the tasks tried again
        self._results: dict[int, Any] | None = None
        self._progress: dict[int, Progress] | None = None
        self._cancelled: set[int] | None = None
        self._ids: dict[str, int] | None = None
        self._next = 0  # in a sequential run, the task that runs next
        self._child_scopes: dict[int, anyio.CancelScope] = {}  # in a group, each task's
        self._cut_short: list[int] = []  # the tasks a cancel from outside stopped as they ran
        self._stopped = False  # by a cancel from outside (its runtime's drain: _drained)

    async def run(self) -> None:
        """Run the tasks, unless the runtime intercepts task lists (as a test recorder does)."""
        if not self.runtime.intercept(self):
            await self.execute()

    async def execute(self, *, detached: bool = False) -> None:
        """Run the tasks, then raise what the error policy says to raise.

        An in-place run (``detached=False``) is counted by the runtime as in flight; if it
        outlives the runtime's drain, the runtime cancels it (see :meth:`cancel`) and names
        its tasks. It then returns, its unfinished tasks reported ``skipped``: its caller
        was not cancelled.

        :param detached: whether the runtime runs this list itself; it then counts the list
            as in flight, cancels it, and names the tasks it cancels, on its own
        """
        statuses = self.runtime.status_book
        statuses.scheduled(self)
        if hooks := self._hooks:
            for task, executor in zip(self.tasks, self.executors, strict=True):
                call_each(hooks, "scheduled", task, executor.name)
        try:
            await self._run_scoped(detached)
        finally:
            self._end()
            statuses.ended(self)
        self._raise_per_policy()

    @property
    def reports(self) -> list[TaskReport]:
        """Once the run has ended, one report per task, in task order; before, none."""
        reports = self._reports
        if reports is None:
            if not self._ended:
                return []
            reports = self._reports = [
                outcome
                if isinstance(outcome, TaskReport)
                else TaskReport(task.id, task.name, executor.name, *(outcome or _SKIPPED))
                for task, executor, outcome in zip(
                    self.tasks, self.executors, self._outcomes, strict=True
                )
            ]
        return reports

    def _end(self) -> None:
        self._ended = True
        if not self._hooks:
            return  # a task that never ended is reported skipped when reports are made
        stopped = self._stopped or self._drained  # else its error policy stopped it
        for index, outcome in enumerate(self._outcomes):
            if outcome is None:
                if stopped:
                    call_each(self._hooks, "cut_short", self.tasks[index])
                self._report(index, _SKIPPED)

    async def _run_scoped(self, detached: bool) -> None:
        """Run the tasks in a cancel scope of the run's own.

        An in-place run (``detached=False``) is counted by the runtime as in flight; a
        detached one is the supervisor's to cancel, which names what it cancels.
        """
        runtime = self.runtime
        self._thread, self._token = threading.get_ident(), current_token()
        sequential = self.concurrency == "sequential"
        # Where set_progress() sends its progress; -1: the task running now.
        context = current_task.set((self, -1)) if sequential else None
        if not detached:
            runtime.track(self)
        try:
            while True:
                with anyio.CancelScope() as self._scope:
                    try:
                        await self._run_all()
                    except anyio.get_cancelled_exc_class():
                        # Not when its runtime or offload.cancel() did: they name the tasks.
                        if not self._scope.cancel_called:
                            self._stopped = True  # from outside: its caller, or its loop's end
                            if not detached:
                                self._log_cancelled()
                        raise
                if not self._scope.cancelled_caught or self._drained:
                    return
                # offload.cancel() stopped one task: the rest of the list runs on.
        finally:
            if not detached:
                runtime.untrack(self)
            if context is not None:
                current_task.reset(context)

    async def _run_all(self) -> None:
        tasks = len(self.tasks)
        if self.concurrency == "sequential":
            run_one = self._run_one
            while (index := self._next) < tasks:
                if self._first_error is not None and self._stops:
                    break
                self._next = index + 1
                await run_one(index)
            return
        async with anyio.create_task_group() as group:
            self._cancel_group = group.cancel_scope
            if _starts_in_spawn_order():
                for index in range(tasks):
                    group.start_soon(self._run_child, index)
            else:
                for index in range(tasks):
                    # One at a time, so that they start in declaration order all the same.
                    await group.start(self._run_child, index)

    async def _run_child(
        self, index: int, *, task_status: StartedStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # A scope of its own, so that offload.cancel() can stop this task alone.
        with anyio.CancelScope() as self._child_scopes[index]:
            await self._run_one(index, task_status=task_status)

    def cancel(self) -> None:
        """Cancel the run, from any thread, as its closing runtime does: it ends as cancelled
        on its own loop, and its tasks that did not end are reported ``skipped``."""
        self._drained = True
        self._on_its_loop(self._stop_running)

    def cancel_task(self, index: int) -> bool:
        """Cancel the task at ``index``, from any thread: a pending one never starts, a
        running one is stopped as its executor can stop it; the rest of the list runs on.

        :return: ``False`` if the task has ended already
        """
        if self._outcomes[index] is not None or self._ended:
            return False
        if self._cancelled is None:
            self._cancelled = set()
        self._cancelled.add(index)
        self._on_its_loop(self._stop_cancelled, index)
        return True

    def record_progress(self, index: int, progress: Progress) -> None:
        """Keep what the task at ``index`` says of its progress; from any thread."""
        if index < 0:  # the task running now, in a sequential run
            index = self._next - 1
        if self._progress is None:
            self._progress = {}
        self._progress[index] = progress

    @property
    def task_count(self) -> int:
        """How many tasks the run has."""
        return len(self.tasks)

    def index_of(self, task_id: str) -> int | None:
        """Return where the task ``task_id`` is in the run; ``None`` if it is not there."""
        ids = self._ids
        if ids is None:  # made when first asked: most runs never are
            ids = self._ids = {task.id: index for index, task in enumerate(self.tasks)}
        return ids.get(task_id)

    def status(self, index: int) -> TaskStatus:
        """Return the status of the task at ``index`` now."""
        task, outcome = self.tasks[index], self._outcomes[index]
        state: State
        error: BaseException | None = None
        ended_at: float | None = None
        if outcome is not None:
            state, error, started_at, duration, attempts = (
                outcome[3:] if isinstance(outcome, TaskReport) else outcome
            )
            if started_at is not None:
                ended_at = started_at + duration
        else:
            started_at = self._started.get(index)
            attempts = 0 if started_at is None else (self._retried or {}).get(index, 1)
            state = "running" if started_at is not None else "skipped" if self._ended else "pending"
        return TaskStatus(
            id=task.id,
            name=task.name,
            executor=self.executors[index].name,
            state=state,
            progress=None if self._progress is None else self._progress.get(index),
            attempts=attempts,
            created_at=self._created_at,
            started_at=started_at,
            ended_at=ended_at,
            error=None if error is None else f"{type(error).__name__}: {error}",
            result=None if self._results is None else self._results.get(index),
        )

    def _on_its_loop(self, action: Callable[..., object], *args: Any) -> None:
        token = self._token
        if token is None:  # not started yet: it will see what was asked when it does
            return
        if threading.get_ident() == self._thread:
            action(*args)
        else:
            call_soon(token, action, *args)  # if its loop has ended, the run has too

    def _stop_running(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _stop_cancelled(self, index: int) -> None:
        if self._outcomes[index] is not None or index not in self._started:
            return  # ended meanwhile, or not started: it will not start
        if self.concurrency == "sequential":
            if self._scope is not None and self._next == index + 1:
                self._scope.cancel()
        elif (scope := self._child_scopes.get(index)) is not None:
            scope.cancel()

    def unfinished(self) -> list[str]:
        """Return the names of the tasks that have not ended yet, or ended only because a
        cancel from outside the list stopped them as they ran."""
        cut_short = self._cut_short
        return [
            task.name
            for index, (task, outcome) in enumerate(zip(self.tasks, self._outcomes, strict=True))
            if outcome is None or index in cut_short
        ]

    @property
    def _stops(self) -> bool:
        return self.on_error in ("raise", "stop")

    async def _run_one(
        self, index: int, *, task_status: StartedStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        cancelled = self._cancelled
        if cancelled is not None and index in cancelled:  # cancelled before it started
            task_status.started()
            self._report(index, ("cancelled", None, None, 0.0, 0))
            return
        task, executor = self.tasks[index], self.executors[index]
        config = self.config
        timeout, retries = task.timeout, task.retries
        if timeout is None:
            timeout = config.task_timeout
        if retries is None:
            retries = config.retries
        started_at, start = time.time(), time.perf_counter()
        self._started[index] = started_at
        attempts = 0
        result: Any = None
        # Where set_progress() sends its progress. A sequential run sets it once, for all.
        context = None if self._cancel_group is None else current_task.set((self, index))
        try:
            if self._cancel_group is not None:
                task_status.started()
                # A task scheduled in a group that a failure cancelled must not start at all.
                await anyio.lowlevel.checkpoint_if_cancelled()
            if executor not in self._ready:
                await self.runtime.ensure_started(executor)
                self._ready.add(executor)
            while True:
                attempts += 1
                if attempts > 1:
                    if self._retried is None:
                        self._retried = {}
                    self._retried[index] = attempts
                if self._hooks:
                    call_each(self._hooks, "started", task, executor.name, attempts)
                error, result = await _attempt(task, executor, timeout)
                # An unpicklable call fails the same way every time: no point in retrying.
                if error is None or attempts > retries or isinstance(error, NotPicklable):
                    break
                # Exponential backoff with jitter, so that tasks failing together (a database
                # restarting) do not all retry in the same instant.
                delay = config.retry_backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.5)
                logger.warning(
                    "Background task %r failed on attempt %d of %d (%r); retrying in %.2fs",
                    task.name, attempts, retries + 1, error, delay,
                )  # fmt: skip
                await anyio.sleep(delay)  # cancellable: a drain or a failing sibling ends it
        except anyio.get_cancelled_exc_class():
            duration = time.perf_counter() - start
            if self._cancelled is not None and index in self._cancelled:  # offload.cancel()
                self._report(index, ("cancelled", None, started_at, duration, attempts))
            elif attempts:  # a failing sibling, the caller or the runtime's drain stopped it
                # Reported here, in the task that started it, so that hooks undo what they
                # made current as it started where they made it.
                if not (self._stops and self._first_error is not None):  # not its policy
                    self._cut_short.append(index)
                    if self._hooks:
                        call_each(self._hooks, "cut_short", task)
                self._report(index, ("skipped", None, started_at, duration, attempts))
            raise
        except Exception as exc:  # the executor itself failed to start
            error = exc
        finally:
            if context is not None:
                current_task.reset(context)
        if error is None:
            if result is not None:
                if self._results is None:
                    self._results = {}
                self._results[index] = result
            duration = time.perf_counter() - start
            self._report(index, ("succeeded", None, started_at, duration, attempts))
            return
        status: Status = "timed_out" if isinstance(error, TaskTimeout) else "failed"
        self._log_failure(task, executor, error)
        if self._first_error is None:
            self._first_error = error
            if self._stops and self._cancel_group is not None:
                self._cancel_group.cancel()
        self._report(index, (status, error, started_at, time.perf_counter() - start, attempts))

    def _report(self, index: int, outcome: Outcome) -> None:
        hooks = self._hooks
        if not hooks:
            self._outcomes[index] = outcome
            return
        task = self.tasks[index]
        report = TaskReport(task.id, task.name, self.executors[index].name, *outcome)
        self._outcomes[index] = report
        call_each(self._hooks_ending, "ended", report)

    def _log_cancelled(self) -> None:
        unfinished = self.unfinished()
        if unfinished:
            logger.error(
                "Background tasks cancelled before they ended: %s (%d); the request that ran "
                "them was cancelled (a client disconnect, a middleware, a server shutdown); "
                "detach=True runs tasks apart from the request",
                ", ".join(unfinished), len(unfinished),
            )  # fmt: skip

    def _log_failure(self, task: PlannedTask, executor: Executor, error: BaseException) -> None:
        if isinstance(error, TaskTimeout):
            logger.error("Background task %r timed out: %s", task.name, error)
        else:
            logger.error(
                "Background task %r failed on the %s executor",
                task.name, executor.name, exc_info=error,
            )  # fmt: skip

    def _raise_per_policy(self) -> None:
        if self._first_error is None:
            return
        if self.on_error == "raise":
            raise self._first_error
        if self.on_error == "collect":
            errors = [r.error for r in self.reports if isinstance(r.error, Exception)]
            raise ExceptionGroup(
                f"{len(errors)} of {len(self.tasks)} background tasks failed", errors
            )


async def _attempt(
    task: Call, executor: Executor, time_limit: float | None
) -> tuple[Exception | None, Any]:
    """Run ``task`` once; return what it raised (a :exc:`TaskTimeout` if it ran out of time)
    and what it returned.

    The executor's :meth:`~offload.Executor.explain_timeout` may end the :exc:`TaskTimeout`
    message (the thread executor's says which hung tasks held the thread limit).

    A task's ``SystemExit``, ``KeyboardInterrupt`` (or any other exception that is not an
    :exc:`Exception`) comes back as an :exc:`OffloadError`: raised on, it would stop the
    server (or the event loop) for the sake of one background task, which nobody could tell
    from a crash. Cancellation is not the task's: it goes on up.
    """
    result: Any = None
    try:
        if time_limit is None:
            return None, await executor.run(task)
        with anyio.move_on_after(time_limit) as scope:
            result = await executor.run(task)
    except Exception as exc:
        return exc, None
    except (anyio.get_cancelled_exc_class(), GeneratorExit):
        raise
    except BaseException as exc:
        return _exit_as_failure(task, exc), None
    if scope.cancelled_caught:
        message = (
            f"background task {task.name!r} timed out after {time_limit}s "
            f"on the {executor.name} executor"
        )
        reason = executor.explain_timeout(task)
        return TaskTimeout(f"{message}: {reason}" if reason else message), None
    return None, result


def _starts_in_spawn_order() -> bool:
    """Whether tasks spawned together start in the order they were spawned.

    asyncio's do (its ready queue is first in, first out); trio shuffles each batch.
    """
    try:
        asyncio.current_task()
    except RuntimeError:  # no asyncio loop runs here: trio
        return False
    return True


def _exit_as_failure(task: Call, exc: BaseException) -> OffloadError:
    said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    error = OffloadError(
        f"background task {task.name!r} raised {said}; a task cannot stop the server, "
        "so it is reported as a failure"
    )
    error.__cause__ = exc
    return error
