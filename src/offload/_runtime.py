"""Runtime: owns the executors, and knows which runtime a task list runs with."""

from __future__ import annotations

import atexit
import logging
import threading
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import anyio

from ._config import OffloadConfig
from ._options import ExecutorSpec
from .executors._base import Executor
from .executors._registry import check_executor_name, create_executor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._runner import TaskRun

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
    every task list uses until it exits; on exit it waits up to ``shutdown_timeout`` for
    the task lists still running, logs any it had to abandon by name, and closes the
    executors. Where no runtime is entered, a default one is created on first use (with
    the config given to :func:`configure`, else :meth:`OffloadConfig.from_env`) and
    closed at interpreter exit.

    :raises ExecutorNotFound: on entry, if ``config.executor`` is not registered
    """

    def __init__(self, config: OffloadConfig | None = None) -> None:
        if config is not None and not isinstance(config, OffloadConfig):
            raise TypeError(f"config must be an OffloadConfig, got {config!r}")
        self.config = config if config is not None else default_config()
        self._executors: dict[str, Executor] = {}
        self._started: dict[Executor, None] = {}  # an ordered set: closed in reverse order
        self._runs: set[Run] = set()
        #: When set, task lists are handed to it instead of run (the pytest plugin's recorder).
        self.capture: Callable[[TaskRun], None] | None = None

    def executor(self, spec: ExecutorSpec) -> Executor:
        """Return the executor ``spec`` names (created on first use), or ``spec`` itself.

        :raises ExecutorNotFound: if ``spec`` is an unknown name
        """
        if isinstance(spec, Executor):
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
        self._runs.add(run)

    def untrack(self, run: Run) -> None:
        self._runs.discard(run)

    async def __aenter__(self) -> Self:
        check_executor_name(self.config.executor)
        for name in {*PREWARMED, self.config.executor} - {"auto"}:
            await self.started(self.executor(name))
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
        """Stop being the active runtime, wait for task lists in flight, close the executors."""
        if self in _entered:
            _entered.remove(self)
        await self._close(drain_timeout=self.config.shutdown_timeout)

    async def _close(self, *, drain_timeout: float) -> None:
        # Runs may be on another event loop (a test client's portal), so poll rather than
        # wait on a loop-bound event.
        with anyio.move_on_after(drain_timeout):
            while self._runs:  # noqa: ASYNC110 (see above)
                await anyio.sleep(0.01)
        abandoned = [name for run in self._runs for name in run.unfinished()]
        if abandoned:
            logger.error(
                "Runtime closed with %d background task(s) unfinished after %ss: %s",
                len(abandoned),
                drain_timeout,
                ", ".join(abandoned),
            )
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
