"""ThreadExecutor: run sync callables in worker threads under offload's own limiter."""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar, current_token

from .._call import call_sync, run_to_end
from .._checks import check_int
from ._base import Executor

if TYPE_CHECKING:
    from .._call import Call
    from .._config import OffloadConfig

#: How many hung tasks a timeout message names; the rest are counted.
_NAMED = 3


class ThreadExecutor(Executor):
    """Run sync callables with :func:`anyio.to_thread.run_sync` under a limiter of its own.

    Starlette and FastAPI run sync endpoints under anyio's default thread limiter; this
    executor never borrows from it, so background work cannot starve the endpoints of
    threads. Context variables are copied into the thread. A coroutine function sent here
    runs on a fresh asyncio loop in the thread.

    A timeout (or any cancellation) stops the *waiting*: the task is reported at once and
    its thread runs on to the end, since Python cannot stop a thread from outside. That
    thread keeps its limiter token until it returns, so ``limit`` bounds the threads this
    executor runs, hung ones included. A task that runs out of time waiting for a token
    held by hung tasks is told so by :meth:`explain_timeout`. Use the process executor
    when work must really be stopped.

    :param limit: how many threads this executor's tasks may use at once, hung ones included
    """

    name = "thread"

    def __init__(self, limit: int = 40) -> None:
        check_int("limit", limit)
        self.limit = limit
        # A limiter belongs to one event loop, so each loop that uses this executor gets its own.
        self._threads: RunVar[_Threads] = RunVar(f"offload.thread-limiter.{id(self)}")

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        return cls(limit=config.thread_limit)

    @property
    def limiter(self) -> CapacityLimiter:
        """This executor's limiter on the running event loop.

        A task holds one of its tokens from before its thread starts until that thread
        returns, even when the task timed out or was cancelled long before.
        """
        return self._on_this_loop().limiter

    def explain_timeout(self, task: Call) -> str | None:
        """Say why ``task``'s last run here ran out of time before it got a thread.

        The runner asks this when an attempt of ``task`` on this executor timed out, and
        adds the answer to the :exc:`TaskTimeout` message. Answers once per timed-out run.

        :returns: which hung tasks hold ``thread_limit``, if the run spent its time waiting
            for a token they held; ``None`` otherwise (it timed out in its thread, or
            waited for tasks still within their own time)
        """
        try:
            threads = self._threads.get()
        except LookupError:
            return None
        return threads.notes.pop(task, None)

    async def run(self, task: Call) -> Any:
        threads = self._on_this_loop()
        if threads.notes:  # left by an earlier run cancelled (not timed out) while it waited
            threads.notes.pop(task, None)
        func = (
            partial(run_to_end, task.func, task.args, task.kwargs)
            if task.is_async
            else partial(call_sync, task)
        )
        run = _Run(task.name, anyio.current_effective_deadline())
        try:
            threads.limiter.acquire_on_behalf_of_nowait(run)
        except anyio.WouldBlock:
            await self._wait_for_token(threads, run, task)
        threads.holders[run] = None
        try:
            # The token is taken above, so this limiter never makes anyone wait: it only keeps
            # anyio's default limiter, which sync endpoints share, out of it.
            return await anyio.to_thread.run_sync(
                run.call, threads, func, abandon_on_cancel=True, limiter=threads.unlimited
            )
        finally:
            if not run.stop_waiting():  # else its thread runs on, and gives the token back
                threads.release(run)

    async def _wait_for_token(self, threads: _Threads, run: _Run, task: Call) -> None:
        try:
            await threads.limiter.acquire_on_behalf_of(run)
        except BaseException:
            # Noted whatever ended the wait: only a timeout asks (explain_timeout) for it.
            if hung := threads.hung():
                threads.notes[task] = _held_by(self.limit, hung)
            raise

    def _on_this_loop(self) -> _Threads:
        try:
            return self._threads.get()
        except LookupError:
            threads = _Threads(self.limit)
            self._threads.set(threads)
            return threads


class _Threads:
    """A thread executor's state on one event loop: its limiter, and who holds the tokens.

    All but :meth:`release_soon` run on the loop's own thread.
    """

    __slots__ = ("_backend", "_loop", "holders", "limiter", "notes", "unlimited")

    def __init__(self, limit: int) -> None:
        self.limiter = CapacityLimiter(limit)
        self.unlimited = CapacityLimiter(math.inf)
        #: The runs holding a token, oldest first; a run leaves when its thread returns.
        self.holders: dict[_Run, None] = {}
        #: What :meth:`ThreadExecutor.explain_timeout` answers, by task.
        self.notes: weakref.WeakKeyDictionary[Call, str] = weakref.WeakKeyDictionary()
        # Held weakly: anyio keeps this object in a dict keyed weakly by the loop itself, which
        # a strong reference from here would keep alive for good.
        token = current_token()
        self._backend = token.backend_class
        self._loop = weakref.ref(token.native_token)

    def hung(self) -> list[_Run]:
        """Return the runs that hold a token though they were given up on or ran out of time.

        Past its deadline counts as hung before its own cancellation is even delivered: a
        group of tasks whose deadlines expire together may see it in any order.
        """
        now = anyio.current_time()
        return [run for run in self.holders if run.deadline <= now or run.abandoned]

    def release(self, run: _Run) -> None:
        del self.holders[run]
        self.limiter.release_on_behalf_of(run)

    def release_soon(self, run: _Run) -> None:
        """Release ``run``'s token on the loop, from the thread of an abandoned run.

        When the loop has ended, its limiter went with it: nothing is left to release.
        """
        loop = self._loop()
        if loop is not None:
            with contextlib.suppress(anyio.RunFinishedError):
                self._backend.run_sync_soon(self.release, (run,), loop)


_PENDING, _RUNNING, _ENDED, _ABANDONED = range(4)


class _Run:
    """One run of a task in a thread, which borrows a limiter token until the thread returns.

    The loop stops waiting for a run (:meth:`stop_waiting`) when its wait ends, for any
    reason; the thread ends it (:meth:`call`). Whichever comes second releases the token,
    so a run given up on while its thread still runs keeps the token until the thread
    returns.
    """

    __slots__ = ("_lock", "_stage", "deadline", "name")

    def __init__(self, name: str, deadline: float) -> None:
        self.name = name
        self.deadline = deadline
        self._lock = threading.Lock()
        self._stage = _PENDING

    @property
    def abandoned(self) -> bool:
        return self._stage == _ABANDONED

    def call(self, threads: _Threads, func: Callable[[], Any]) -> Any:
        """Call ``func`` in the worker thread, unless the run was given up on before."""
        with self._lock:
            if self._stage == _ABANDONED:  # its token is back already; nobody waits for it
                return None
            self._stage = _RUNNING
        try:
            return func()
        finally:
            with self._lock:
                abandoned = self._stage == _ABANDONED
                self._stage = _ENDED
            if abandoned:
                threads.release_soon(self)

    def stop_waiting(self) -> bool:
        """Return whether the thread runs on, and then gives the token back when it returns.

        Called on the loop when the wait for the thread ends, whether it returned or the run
        was given up on. A thread that had not started by then never runs the task.
        """
        with self._lock:
            runs_on = self._stage == _RUNNING
            if self._stage != _ENDED:
                self._stage = _ABANDONED
        return runs_on


def _held_by(limit: int, hung: list[_Run]) -> str:
    names = ", ".join(repr(run.name) for run in hung[:_NAMED])
    if len(hung) > _NAMED:
        names += f" (+{len(hung) - _NAMED} more)"
    if len(hung) == 1:
        held = "1 task that timed out or was cancelled and still runs in its thread"
    else:
        held = f"{len(hung)} tasks that timed out or were cancelled and still run in their threads"
    return f"it waited for a thread: thread_limit={limit} is held by {held}: {names}"
