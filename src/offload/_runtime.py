"""Runtime: owns the executors, tracks the task lists in flight, and drains them at exit."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Literal, Protocol, Self

import anyio

from ._config import OffloadConfig
from ._detached import Named, Run, Supervisor, Ticket
from ._exceptions import OffloadError, Overloaded
from ._hooks import ReportHook, TaskHooks, global_hooks
from ._options import ExecutorSpec, resolve_executor
from ._status import StatusBook, TaskStatus
from .executors._base import Executor
from .executors._futures import wait_future
from .executors._registry import AUTO, check_executor_name, create_executor

logger = logging.getLogger("offload")

#: Executors a runtime starts on entry, so the first request does not pay for their start;
#: others start on entry if its config names them, else on first use. Worker processes
#: start only for an app that uses them: a server's daemonic workers (hypercorn's default)
#: cannot have children, and a script without an ``if __name__ == "__main__":`` guard would
#: run again in each of them.
PREWARMED = ("inline", "thread")


class JournalService(Protocol):
    """A runtime's journal of durable tasks (``offload._durable`` makes it): started when the
    runtime is entered, closed once it has drained."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


#: Makes a runtime's journal service; set by the module above that builds it, so that this
#: one needs not import it.
_journal_service: Callable[[Runtime, str], JournalService] | None = None


def set_journal_service(factory: Callable[[Runtime, str], JournalService]) -> None:
    """Make ``factory(runtime, path)`` what gives a runtime with a journal its service."""
    global _journal_service
    _journal_service = factory


#: How long a closing runtime waits for the detached tasks it cancelled to end. A task that
#: swallows its cancellation is left behind, named in the log, rather than hang shutdown.
CANCEL_GRACE = 5.0

#: ``idle``: never entered; executors start on first use (so lives the default runtime).
#: ``running``: entered. ``closing``: draining. ``closed``: closed; it starts no executor
#: until it is entered again.
State = Literal["idle", "running", "closing", "closed"]


class Runtime:
    """Owns the executors that task lists run on, and the config they run with.

    ``async with Runtime(config):`` starts the executors and makes this runtime the one
    every task list uses until it exits. Where no runtime is entered, a default one is
    created on first use (with the config given to :func:`configure`, else
    :meth:`OffloadConfig.from_env`) and closed at interpreter exit.

    The runtime task lists use is process-wide, not per thread or event loop: it is the
    innermost runtime entered, on whatever thread or loop it was entered. So a test
    client's portal loop, or a sync endpoint's worker thread, finds the runtime that the
    application's lifespan (or the test) entered on another loop. Runtimes entered at once
    stack: the last one entered is used until it exits, even by code on other loops.

    An entered runtime also runs *detached* task lists (``detach=True``): on the event loop
    that entered it, in a task group of its own, so a list handed over by a request runs
    apart from that request. At most ``max_pending`` detached lists may be pending or
    running at once; scheduling one more raises :exc:`Overloaded`.

    On exit it stops taking detached lists, waits up to ``shutdown_timeout`` for every task
    list still pending or running, then cancels every list that is left, detached or run in
    place by a caller, and logs each task it had to abandon by name, with their count; then
    it closes the executors. Its exit is shielded from cancellation (it is bounded by
    ``shutdown_timeout`` instead), so leaving it from a cancelled scope still closes the
    executors and their worker processes. Once closed, it starts no executor until it is
    entered again: a task list still running with it fails with :exc:`OffloadError`.

    :param config: the config its task lists run with; the default config when ``None``
        (see :func:`~offload.configure`), else one read from ``OFFLOAD_*`` variables
    :raises ExecutorNotFound: on entry, if ``config.executor`` is not registered
    """

    def __init__(self, config: OffloadConfig | None = None) -> None:
        if config is not None and not isinstance(config, OffloadConfig):
            raise TypeError(f"config must be an OffloadConfig, got {config!r}")
        self._config = config if config is not None else default_config()
        self._executors: dict[str, Executor] = {}
        self._defaults: list[Executor | None] = [None, None]  # by is_async: default_executor
        self._started: dict[Executor, None] = {}  # an ordered set: closed in reverse order
        # Ordered sets, so that a drain names abandoned tasks in the order they were scheduled.
        self._runs: dict[Run, None] = {}  # task lists running in place, in their callers' tasks
        # Detached lists, from the endpoint that scheduled them until their last task ends.
        self._tickets: dict[Ticket, None] = {}
        # Reentrant: a ticket's finalizer may run (garbage collection) while the lock is held.
        self._lock = threading.RLock()
        self._state: State = "idle"
        self._supervisor: Supervisor[Ticket] | None = None
        self._idle: Future[None] | None = None  # set once nothing runs, while closing
        self._interceptor: Callable[[Run], None] | None = None
        #: The statuses of the tasks run with this runtime, for following them by id.
        self.status_book = StatusBook(self._config.keep_statuses)
        self._own_hooks: tuple[TaskHooks, ...] = ()
        on_report = self._config.on_report
        self._report_hooks: tuple[TaskHooks, ...] = (
            () if on_report is None else (ReportHook(on_report),)
        )
        #: The journal of durable tasks, while the runtime is entered with a config that
        #: names one; else ``None``.
        self.journal: JournalService | None = None

    @property
    def config(self) -> OffloadConfig:
        """The config this runtime's task lists run with."""
        return self._config

    def executor(self, spec: ExecutorSpec) -> Executor:
        """Return the executor ``spec`` names in this runtime (created on first use, not
        started), or ``spec`` itself if it is an executor.

        :raises ExecutorNotFound: if ``spec`` is an unknown name
        """
        if not isinstance(spec, str):  # an Executor; str first: isinstance on an ABC costs more
            return spec
        try:
            return self._executors[spec]
        except KeyError:
            return self._executors.setdefault(spec, create_executor(spec, self._config))

    def default_executor(self, is_async: bool) -> Executor:
        """Return the executor of a task that nothing but the config chose one for: the
        config's ``executor``, with ``"auto"`` decided by whether the task is async.

        :raises ExecutorNotFound: if the config names an unknown executor
        """
        executor = self._defaults[is_async]
        if executor is None:
            spec = resolve_executor(None, None, self._config.executor, is_async)
            executor = self._defaults[is_async] = self.executor(spec)
        return executor

    @property
    def pending(self) -> int:
        """How many detached task lists are pending or running."""
        return len(self._tickets)

    @property
    def started(self) -> bool:
        """Whether this runtime has started an executor it has not closed yet."""
        return bool(self._started)

    async def ensure_started(self, executor: Executor) -> None:
        """Start ``executor`` unless this runtime already has; it is closed with the runtime.

        :raises OffloadError: if this runtime is closed
        """
        if executor in self._started:
            return
        self._check_open(executor)
        await executor.start()
        if self._state == "closed":  # closed while it started: nobody else will close it
            with anyio.CancelScope(shield=True):
                await executor.aclose()
            self._check_open(executor)
        self._started[executor] = None

    def _check_open(self, executor: Executor) -> None:
        if self._state == "closed":
            raise OffloadError(
                f"the offload Runtime is closed, so it starts no executor ({executor.name!r}); "
                "run task lists while the runtime is entered, or enter it again"
            )

    def add_hooks(self, hooks: TaskHooks) -> None:
        """Call ``hooks`` on the way of every task run with this runtime (see
        :class:`~offload.TaskHooks`); :func:`offload.add_hooks` adds hooks to every runtime."""
        if not isinstance(hooks, TaskHooks):
            raise TypeError(f"hooks must be an offload.TaskHooks, got a {type(hooks).__name__}")
        if hooks not in self._own_hooks:
            self._own_hooks = (*self._own_hooks, hooks)

    def remove_hooks(self, hooks: TaskHooks) -> None:
        """Stop calling ``hooks`` added with :meth:`add_hooks`; unknown hooks are ignored."""
        self._own_hooks = tuple(added for added in self._own_hooks if added is not hooks)

    @property
    def hooks(self) -> tuple[TaskHooks, ...]:
        """Every hook called for this runtime's tasks: its own, the process-wide ones, and
        the config's ``on_report``, in that order."""
        return self._own_hooks + global_hooks() + self._report_hooks

    def status(self, task_id: str) -> TaskStatus | None:
        """Return the status of a task run with this runtime; ``None`` if unknown or forgotten."""
        return self.status_book.status(task_id)

    def statuses(self) -> list[TaskStatus]:
        """Return the statuses this runtime keeps, newest first."""
        return self.status_book.statuses()

    def cancel(self, task_id: str) -> bool:
        """Cancel a pending or running task of this runtime (see :func:`offload.cancel`).

        :return: ``True`` if it was cancelled; ``False`` if it had ended, or is unknown
        """
        return self.status_book.cancel(task_id)

    def set_interceptor(self, interceptor: Callable[[Run], None] | None) -> None:
        """Hand every task list run with this runtime to ``interceptor`` instead of running
        it, until set back to ``None``: the seam a test recorder plugs into."""
        self._interceptor = interceptor

    def intercept(self, run: Run) -> bool:
        """Hand ``run`` to the interceptor, if one is set; return whether it took the run."""
        interceptor = self._interceptor
        if interceptor is None:
            return False
        interceptor(run)
        return True

    def track(self, run: Run) -> None:
        """Count an in-place ``run`` as in flight until :meth:`untrack`: a drain waits for
        it, and cancels it if it outlives the drain."""
        self._runs[run] = None

    def untrack(self, run: Run) -> None:
        """Stop counting ``run`` as in flight: it has ended."""
        self._runs.pop(run, None)
        if self._idle is not None:
            self._notify_if_idle()

    def check_detach(self, source: str = "detach=True") -> None:
        """Check that this runtime takes detached task lists now.

        :param source: where the detach setting came from, for the message
        :raises OffloadError: if the runtime is not entered, or is shutting down
        """
        if self._state == "closing":
            raise OffloadError(
                "the offload Runtime is shutting down, so it takes no new detached tasks; "
                "schedule them before shutdown begins, or answer 503 Service Unavailable"
            )
        if self._state != "running":
            raise OffloadError(
                f"{source} needs a running offload Runtime to hand the tasks to, and none is "
                "entered; serve the app with lifespan=offload.lifespan(config), or run the "
                "code inside `async with offload.Runtime(config):`"
            )

    def reserve(self, tasks: Sequence[Named]) -> Ticket:
        """Count a detached task list as pending, from now until its last task ends.

        Called while the endpoint still runs, so that a full runtime says so before the
        response is sent.

        :param tasks: the list's tasks, named in the log if the list is never run
        :raises Overloaded: if ``max_pending`` lists are already pending or running
        :raises OffloadError: if the runtime is not entered, or is shutting down
        """
        with self._lock:
            self.check_detach()
            limit = self._config.max_pending
            if limit is not None and len(self._tickets) >= limit:
                raise Overloaded(
                    f"detached work is at max_pending={limit!r} ({len(self._tickets)} task "
                    "lists pending or running), so no more can be scheduled; answer 503 "
                    "Service Unavailable so the client retries later, or raise max_pending"
                )
            ticket = Ticket(self._release, tasks)
            self._tickets[ticket] = None
            return ticket

    def submit(self, ticket: Ticket, run: Run, tasks: Sequence[Named]) -> None:
        """Hand ``run``, reserved by ``ticket``, to the supervisor; it runs on this runtime's
        event loop.

        :raises OffloadError: if this runtime closed after the list was scheduled
        """
        with self._lock:
            supervisor = self._supervisor
            ticket.run = run
            if supervisor is None:
                ticket.end()
                raise OffloadError(
                    f"the offload Runtime closed before the detached tasks "
                    f"{[task.name for task in tasks]!r} were handed to it, so they did "
                    "not run; schedule detached tasks only while the runtime is entered"
                )
        try:
            supervisor.submit(ticket)
        except anyio.RunFinishedError:
            ticket.end()
            raise OffloadError(
                "the event loop of the offload Runtime has ended without closing the runtime, "
                f"so the detached tasks {[task.name for task in tasks]!r} cannot run"
            ) from None

    def _release(self, ticket: Ticket) -> bool:
        """Stop counting a detached list as pending (its ticket's :meth:`~Ticket.end` asks).

        :return: whether it was still counted: ``False`` once released already
        """
        with self._lock:
            counted = self._tickets.pop(ticket, 0) is None
            if self._idle is not None:
                self._notify_if_idle()
            return counted

    def _notify_if_idle(self) -> None:
        with self._lock:
            idle = self._idle
            if idle is not None and not idle.done() and not self._runs and not self._tickets:
                idle.set_result(None)

    async def _run_detached(self, ticket: Ticket) -> None:
        """Run a detached list in the supervisor's task group; log what its policy raises."""
        run = ticket.run
        assert run is not None
        try:
            await run.execute(detached=True)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # whatever it is, it must not end the other lists
            logger.error(
                "Detached background tasks %s ended with %r, which on_error=%r raises; it is "
                "only logged, since no caller is left to receive it",
                ", ".join(task.name for task in ticket.tasks), exc, run.on_error,
            )  # fmt: skip
        finally:
            ticket.end()

    def _abandoned(self, tickets: list[Ticket]) -> None:
        """Name the detached tasks cut short by the end of this runtime's event loop."""
        names = [name for ticket in tickets for name in ticket.unfinished()]
        if not names:
            logger.warning(
                "The event loop of an offload Runtime ended before the runtime was closed; "
                "close the runtime (leave `async with Runtime(...)`) before its event loop ends"
            )
            return
        logger.error(
            "The event loop of an offload Runtime ended before the runtime was closed, "
            "abandoning %d background task(s): %s. A server's forced exit (Ctrl-C twice) "
            "skips the lifespan shutdown that drains them; close the runtime (leave "
            "`async with Runtime(...)`) before its event loop ends",
            len(names), ", ".join(names),
        )  # fmt: skip

    async def __aenter__(self) -> Self:
        if self._state in ("running", "closing"):
            raise RuntimeError(f"{self!r} is already entered; enter a runtime once at a time")
        check_executor_name(self._config.executor)
        self._state = "idle"  # a closed runtime may be entered again
        try:
            # Ordered, so that executors start (and close) in the same order on every run.
            used = (*PREWARMED, *self._executors, self._config.executor)
            if self._config.preload:  # only the process executor preloads
                used += ("process",)
            for name in dict.fromkeys(used):
                if name != AUTO:
                    await self.ensure_started(self.executor(name))
            supervisor = Supervisor(self._run_detached, Ticket.end, self._abandoned)
            await supervisor.start()
        except BaseException:
            self._state = "closed"
            with anyio.CancelScope(shield=True):
                await self._close_executors()
            raise
        with self._lock:
            self._supervisor, self._state, self._idle = supervisor, "running", None
        _entered.append(self)
        if self._config.journal is not None:
            try:
                await self._open_journal(self._config.journal)
            except BaseException:
                await self.aclose()
                raise
        return self

    async def _open_journal(self, path: str) -> None:
        if _journal_service is None:
            raise OffloadError("durable tasks are not available: import offload first")
        journal = _journal_service(self, path)
        await journal.start()  # takes over what gone runtimes left: it runs from now on
        self.journal = journal

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, *, drain_timeout: float | None = None) -> None:
        """Drain, stop being the active runtime, and close the executors.

        Draining stops the intake of detached task lists, waits up to ``drain_timeout``
        (``shutdown_timeout`` by default) for every task list still pending or running, then
        cancels the lists left and logs each task it had to abandon by name. While it drains,
        this runtime is still the one task lists use, so an in-place list started meanwhile
        gets working executors.

        Shielded from cancellation: a cancelled caller still gets the executors closed.
        """
        if drain_timeout is None:
            drain_timeout = self._config.shutdown_timeout
        with anyio.CancelScope(shield=True):
            try:
                await self._drain(drain_timeout)
            finally:
                with contextlib.suppress(ValueError):  # a runtime closed without being entered
                    _entered.remove(self)
                await self._close_executors()

    async def _drain(self, drain_timeout: float) -> None:
        journal = self.journal
        with self._lock:
            if self._state == "running":
                self._state = "closing"
            idle = self._idle = Future()
            self._notify_if_idle()
        try:
            # A future, not an event: task lists end on whatever loop or thread runs them.
            with anyio.move_on_after(drain_timeout):
                await wait_future(idle)
        finally:
            with self._lock:
                self._idle = None
                idle.cancel()  # wakes the wait above if it timed out, while its loop still runs
                runs, tickets = [*self._runs], [*self._tickets]
                supervisor, self._supervisor = self._supervisor, None
                self._state = "closed"
            unfinished: list[Run | Ticket] = [*runs, *tickets]
            abandoned = [name for run in unfinished for name in run.unfinished()]
            if abandoned:
                logger.error(
                    "Runtime closed with %d background task(s) unfinished after %ss: %s",
                    len(abandoned), drain_timeout, ", ".join(abandoned),
                )  # fmt: skip
            for run in runs:  # named above; they end as cancelled, on their own loops
                run.cancel()
            if supervisor is not None:
                await self._close_supervisor(supervisor)
            for ticket in list(self._tickets):  # scheduled, but never handed over: named above
                ticket.end()
            if journal is not None:  # what did not end stays journaled, for the next runtime
                self.journal = None
                await journal.aclose()

    async def _close_supervisor(self, supervisor: Supervisor[Ticket]) -> None:
        """Cancel the detached lists left; name those that do not end within the grace."""
        left = await supervisor.close(CANCEL_GRACE)
        names = [name for ticket in left for name in ticket.unfinished()]
        if names:
            logger.error(
                "Detached background task(s) still running %ss after they were cancelled, "
                "left behind (do they swallow cancellation?): %s",
                CANCEL_GRACE, ", ".join(names),
            )  # fmt: skip

    async def _close_executors(self) -> None:
        """Close every started executor, in reverse order; a failure is logged, and an
        interruption (a ``KeyboardInterrupt``, say) raised once all are closed."""
        interrupted: BaseException | None = None
        started, self._started = self._started, {}
        for executor in reversed(started):
            try:
                await executor.aclose()
            except Exception:
                logger.exception("Closing executor %r failed", executor)
            except BaseException as exc:
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted

    def __repr__(self) -> str:
        return f"<Runtime executors={sorted(self._executors)!r}>"


_entered: list[Runtime] = []  # process-wide, innermost last: see Runtime
_default_config: OffloadConfig | None = None


def entered_runtime() -> Runtime | None:
    """Return the innermost runtime entered and not yet closed, on any thread or loop."""
    return _entered[-1] if _entered else None


def default_config() -> OffloadConfig:
    """Return the config given to :func:`~offload.configure`, else one read from ``OFFLOAD_*``."""
    return _default_config if _default_config is not None else OffloadConfig.from_env()


def set_default_config(config: OffloadConfig | None) -> None:
    """Make ``config`` what :func:`default_config` returns; ``None`` reads ``OFFLOAD_*`` again."""
    global _default_config
    _default_config = config
