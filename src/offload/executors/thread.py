"""ThreadExecutor: run sync callables in worker threads under offload's own limiter."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self

import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

from .._config import check_int
from ._base import Executor

if TYPE_CHECKING:
    from .._config import OffloadConfig
    from .._task import BackgroundTask


class ThreadExecutor(Executor):
    """Run sync callables with :func:`anyio.to_thread.run_sync` under a limiter of its own.

    Starlette and FastAPI run sync endpoints under anyio's default thread limiter; this
    executor never borrows from it, so background work cannot starve the endpoints of
    threads. Context variables are copied into the thread. A coroutine function sent here
    runs on a fresh asyncio loop in the thread.

    A timeout (or any cancellation) stops the *waiting*: the task is reported at once and
    its thread runs on to the end, since Python cannot stop a thread from outside. Use the
    process executor when work must really be stopped.

    :param limit: how many of this executor's tasks may run at once
    """

    name = "thread"

    def __init__(self, limit: int = 40) -> None:
        check_int("limit", limit)
        self.limit = limit
        # A limiter belongs to one event loop, so each loop that uses this executor gets its own.
        self._limiter: RunVar[CapacityLimiter] = RunVar(f"offload.thread-limiter.{id(self)}")

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        return cls(limit=config.thread_limit)

    @property
    def limiter(self) -> CapacityLimiter:
        """This executor's limiter on the running event loop."""
        try:
            return self._limiter.get()
        except LookupError:
            limiter = CapacityLimiter(self.limit)
            self._limiter.set(limiter)
            return limiter

    async def run(self, task: BackgroundTask) -> Any:
        if task.is_async:
            return await anyio.to_thread.run_sync(
                _run_coroutine_function, task, limiter=self.limiter, abandon_on_cancel=True
            )
        return await anyio.to_thread.run_sync(
            task.call, limiter=self.limiter, abandon_on_cancel=True
        )


def _run_coroutine_function(task: BackgroundTask) -> Any:
    return asyncio.run(task.func(*task.args, **task.kwargs))
