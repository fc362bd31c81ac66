"""Runtime: owns the executors, and knows which runtime a task list runs with."""

from __future__ import annotations

import atexit
import logging
import threading
from concurrent.futures import Future
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

import anyio

from ._config import OffloadConfig
from ._detached import Supervisor, Ticket
from ._exceptions import OffloadError, Overloaded
from ._options import ExecutorSpec
from .executors._base import Executor
from .executors._futures import wait_future
from .executors._registry import check_executor_name, create_executor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ._runner import TaskRun
    from ._task import BackgroundTask

logger = logging.getLogger("offload")

#: Executors a runtime starts on entry, so the first request does not pay for their start.
PREWARMED = ("inline", "thread", "process")


class Run(Protocol):
    """What a runtime needs to know of a task list in flight."""

    def unfinished(self) -> list[str]:
        """Return the names of the tasks that have not ended yet."""
        ...


class Runtime:
    """Owns the executors that task lists run on, and the config they run with.

    ``async with Runtime(config):`` starts the executors and makes this runtime the one
    every task list uses until it exits. Where no runtime is entered, a default one is
    created on first use (with the config given to :func:`configure`, else
    :meth:`OffloadConfig.from_env`) and closed at interpreter exit.

    An entered runtime also runs *detached* task lists (``detach=True``): on the event loop
    that entered it, in a task group of its own, so a list handed over by a request runs
    apart from that request. At most ``max_pending`` detached lists may be pending or
    running at once; scheduling one more raises :exc:`Overloaded`.

    On exit it stops taking detached lists, waits up to ``shutdown_timeout`` for every task
    list still pending or running, then cancels the detached ones that are left and logs
    every task it had to abandon by name, with their count; then it closes the executors.

    :raises ExecutorNotFound: on entry, if ``config.executor`` is not registered
    """

    def __init__(self, config: OffloadConfig | None = None) -> None:
        if config is not None and not isinstance(config, OffloadConfig):
            raise TypeError(f"config must be an OffloadConfig, got {config!r}")
        self.config = config if config is not None else default_config()
        self._executors: dict[str, Executor] = {}
        self._started: dict[Executor, None] = {}  # an ordered set: closed in reverse order
        # Ordered sets, so that a drain names abandoned tasks in the order they were scheduled.
        self._runs: dict[Run, None] = {}  # task lists running in place, in their callers' tasks
        # Detached lists, from the endpoint that scheduled them until their last task ends.
        self._tickets: dict[Ticket, None] = {}
        # Reentrant: a ticket's finalizer may run (garbage collection) while the lock is held.
        self._lock = threading.RLock()
        self._state: Literal["idle", "running", "closing"] = "idle"
        self._supervisor: Supervisor[Ticket] | None = None
        self._idle: Future[None] | None = None  # set once nothing runs, while closing
        #: When set, task lists are handed to it instead of run (the pytest plugin's recorder).
        self.capture: Callable[[TaskRun], None] | None = None

    def executor(self, spec: ExecutorSpec) -> Executor:
        """Return the executor ``spec`` names (created on first use), or ``spec`` itself.

        :raises ExecutorNotFound: if ``spec`` is an unknown name
        """
        if not isinstance(spec, str):  # an Executor; str first: isinstance on an ABC costs more
            return spec
        try:
            return self._executors[spec]
        except KeyError:
            return self._executors.setdefault(spec, create_executor(spec, self.config))

    async def started(self, executor: Executor) -> Executor:
        """Start ``executor`` unless this runtime already has; it is closed with the runtime."""
        if executor not in self._started:
            await executor.start()
            self._started[executor] = None
        return executor

    def track(self, run: Run) -> None:
        """Count ``run`` as in flight until :meth:`untrack`, so closing waits for it."""
        self._runs[run] = None

    def untrack(self, run: Run) -> None:
        self._runs.pop(run, None)
        if self._idle is not None:
            self._notify_if_idle()

    def check_detach(self, source: str = "detach=True") -> None:
        """Check that this runtime takes detached task lists now.

        :param source: where the detach setting came from, for the message
        :raises OffloadError: if the runtime is not entered, or is shutting down
        """
        if self._state == "idle":
            raise OffloadError(
                f"{source} needs a running offload Runtime to hand the tasks to, and none is "
                "entered; serve the app with lifespan=offload.lifespan(config), or run the "
                "code inside `async with offload.Runtime(config):`"
            )
        if self._state == "closing":
            raise OffloadError(
                "the offload Runtime is shutting down, so it takes no new detached tasks; "
                "schedule them before shutdown begins, or answer 503 Service Unavailable"
            )

    def reserve(self, tasks: Sequence[BackgroundTask]) -> Ticket:
        """Count a detached task list as pending, from now until its last task ends.

        Called while the endpoint still runs, so that a full runtime says so before the
        response is sent.

        :param tasks: the list's tasks, named in the log if the list is never run
        :raises Overloaded: if ``max_pending`` lists are already pending or running
        :raises OffloadError: if the runtime is not entered, or is shutting down
        """
        with self._lock:
            self.check_detach()
            limit = self.config.max_pending
            if limit is not None and len(self._tickets) >= limit:
                raise Overloaded(
                    f"detached work is at max_pending={limit!r} ({len(self._tickets)} task "
                    "lists pending or running), so no more can be scheduled; answer 503 "
                    "Service Unavailable so the client retries later, or raise max_pending"
                )
            ticket = Ticket(self, tasks)
            self._tickets[ticket] = None
            return ticket

    def submit(self, ticket: Ticket, run: TaskRun) -> None:
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
                    f"{[task.name for task in run.tasks]!r} were handed to it, so they did "
                    "not run; schedule detached tasks only while the runtime is entered"
                )
        try:
            supervisor.submit(ticket)
        except anyio.RunFinishedError:
            ticket.end()
            raise OffloadError(
                "the event loop of the offload Runtime has ended without closing the runtime, "
                f"so the detached tasks {[task.name for task in run.tasks]!r} cannot run"
            ) from None

    def release(self, ticket: Ticket) -> bool:
        """Stop counting a detached list as pending (its ticket's :meth:`~Ticket.end` does).

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
                ", ".join(task.name for task in run.tasks), exc, run.on_error,
            )  # fmt: skip
        finally:
            ticket.end()

    async def __aenter__(self) -> Self:
        if self._state != "idle":
            raise RuntimeError(f"{self!r} is already entered; enter a runtime once at a time")
        check_executor_name(self.config.executor)
        for name in {*PREWARMED, self.config.executor} - {"auto"}:
            await self.started(self.executor(name))
        supervisor = Supervisor(self._run_detached, Ticket.end)
        await supervisor.start()
        with self._lock:
            self._supervisor, self._state, self._idle = supervisor, "running", None
        _entered.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drain, stop being the active runtime, and close the executors.

        Draining stops the intake of detached task lists, waits up to ``shutdown_timeout``
        for every task list still pending or running, then cancels the detached ones left
        and logs each task it had to abandon by name. While it drains, this runtime is still
        the one task lists use, so an in-place list started meanwhile gets working executors.
        """
        try:
            await self._drain(self.config.shutdown_timeout)
        finally:
            if self in _entered:
                _entered.remove(self)
        await self._close_executors()

    async def _close(self, *, drain_timeout: float) -> None:
        await self._drain(drain_timeout)
        await self._close_executors()

    async def _drain(self, drain_timeout: float) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "closing"
            idle = self._idle = Future()
            self._notify_if_idle()
        # A future, not an event: task lists end on whatever loop or thread runs them.
        with anyio.move_on_after(drain_timeout):
            await wait_future(idle)
        with self._lock:
            self._idle = None
            idle.cancel()  # wakes the wait above if it timed out, while its loop still runs
            unfinished: list[Run] = [*self._runs, *self._tickets]
            supervisor, self._supervisor = self._supervisor, None
            self._state = "idle"
        abandoned = [name for run in unfinished for name in run.unfinished()]
        if abandoned:
            logger.error(
                "Runtime closed with %d background task(s) unfinished after %ss: %s",
                len(abandoned),
                drain_timeout,
                ", ".join(abandoned),
            )
        if supervisor is not None:
            await supervisor.close()  # cancels the detached lists left, and waits for them
        for ticket in list(self._tickets):  # scheduled, but never handed over: named above
            ticket.end()

    async def _close_executors(self) -> None:
        for executor in reversed(self._started):
            try:
                await executor.aclose()
            except Exception:
                logger.exception("Closing executor %r failed", executor)
        self._started.clear()

    def __repr__(self) -> str:
        return f"<Runtime executors={sorted(self._executors)!r}>"


_entered: list[Runtime] = []
_default: Runtime | None = None
_default_config: OffloadConfig | None = None
_to_close_at_exit: list[Runtime] = []
_lock = threading.Lock()


def current_runtime() -> Runtime:
    """Return the innermost entered runtime, else the default one (created on first use)."""
    if _entered:
        return _entered[-1]
    return _default or _create_default()


def configure(config: OffloadConfig) -> None:
    """Set the config of the default runtime, used wherever no :class:`Runtime` is entered.

    Call it at start-up: a default runtime already in use is replaced, and closed at exit.
    """
    global _default, _default_config
    if not isinstance(config, OffloadConfig):
        raise TypeError(f"configure() needs an OffloadConfig, got {config!r}")
    with _lock:
        _default_config = config
        _default = None


def default_config() -> OffloadConfig:
    """Return the config given to :func:`configure`, else one read from ``OFFLOAD_*``."""
    return _default_config if _default_config is not None else OffloadConfig.from_env()


def _create_default() -> Runtime:
    global _default
    with _lock:
        if _default is None:
            _default = Runtime()
            _to_close_at_exit.append(_default)
        return _default


def _close_at_exit(runtimes: Iterable[Runtime] = _to_close_at_exit) -> None:
    for runtime in runtimes:
        if runtime._started:
            # No event loop outlives the program, so there is nothing left to wait for.
            anyio.run(partial(runtime._close, drain_timeout=0))


atexit.register(_close_at_exit)
