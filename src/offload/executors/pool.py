"""PoolExecutor: run tasks on any ``concurrent.futures.Executor`` (yours, loky's, dask's)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import Executor as FuturesExecutor
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread

from .._call import run_to_end
from .._callables import unwrap
from .._carrier import current_carrier
from . import _worker
from ._base import Executor
from ._futures import wait_future
from ._pickling import payload_of, unpack_outcome

if TYPE_CHECKING:
    from .._call import Call
    from .._config import OffloadConfig

PoolFactory = Callable[[], FuturesExecutor]

_NO_FACTORY = (
    "PoolExecutor cannot replace a broken pool it was given; give it a factory instead, "
    "e.g. PoolExecutor(lambda: ProcessPoolExecutor(4))"
)


class PoolExecutor(Executor):
    """Run tasks on a :class:`concurrent.futures.Executor`: your own pool, loky's, or
    ``dask.distributed.Client.get_executor(pure=False)``.

    - **A pool given as an instance** stays yours: offload never shuts it down, and cannot
      replace it when it breaks.
    - **A pool made by a factory** (a zero-argument callable) is offload's: made when first
      needed (:meth:`start`, or its first task), shut down by
      :meth:`aclose`, and replaced from the factory when it breaks
      (:exc:`~concurrent.futures.BrokenExecutor`): the tasks in the broken pool fail, the
      next ones run on a new pool. A ``ProcessPoolExecutor`` breaks as a whole when one of its
      workers dies; :class:`ProcessExecutor` isolates crashes instead.
    - With a ``ProcessPoolExecutor``, a task's call is pickled by :meth:`prepare` as soon as
      it is bound here (an unpicklable one raises :exc:`NotPicklable` then) and those bytes
      are sent; a result or exception that cannot cross back becomes :exc:`OffloadError`.
      Other pools get the call as it is, ``submit(func, *args, **kwargs)``; a coroutine
      function is wrapped to run with :func:`asyncio.run`, which needs offload importable
      where the pool runs it.

    A timeout (any cancellation) only stops the *waiting*: a task still queued in the pool
    is cancelled, but one already running runs on to its end, because a generic executor
    offers no way to stop it. Use :class:`ProcessExecutor` when work must really stop.

    :param executor_or_factory: the pool, or a zero-argument callable that makes one
    :raises TypeError: if it is neither
    """

    name = "pool"

    def __init__(self, executor_or_factory: FuturesExecutor | PoolFactory) -> None:
        self._pool: FuturesExecutor | None
        self._factory: PoolFactory | None
        if isinstance(executor_or_factory, FuturesExecutor):
            self._pool, self._factory = executor_or_factory, None
        elif callable(executor_or_factory):
            self._pool, self._factory = None, executor_or_factory
        else:
            raise TypeError(
                "PoolExecutor needs a concurrent.futures.Executor or a zero-argument factory "
                f"that returns one, got {executor_or_factory!r}"
            )
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        raise TypeError(
            "PoolExecutor wraps a pool you give it, so a config alone cannot build it; "
            "register a factory instead: "
            "register_executor('mypool', lambda config: PoolExecutor(make_pool))"
        )

    def prepare(self, task: Call) -> None:
        """Pickle the call now if the pool is, or its factory makes, a ``ProcessPoolExecutor``.

        A factory is not called here (that would make a pool outside the executor's start and
        close): only a ``ProcessPoolExecutor`` class, or a ``functools.partial`` of one, tells
        what it makes before the pool exists. Other factories' tasks are pickled when they run.

        :raises NotPicklable: naming the task and the part of the call that does not pickle
        """
        pool = self._pool
        if isinstance(pool, ProcessPoolExecutor) or (
            pool is None and _makes_process_pools(self._factory)
        ):
            payload_of(task)

    async def start(self) -> None:
        """Make the pool from the factory, if there is one and it has not yet."""
        if self._pool is None:
            await anyio.to_thread.run_sync(self._current_pool)

    async def aclose(self) -> None:
        """Shut down and wait for a pool made by the factory; a pool given stays as it is."""
        if self._factory is None:
            return
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(_shut_down, pool)

    async def run(self, task: Call) -> Any:
        """Submit ``task`` to the pool and wait for its result.

        Cancelling the run cancels the task if the pool has not started it yet; otherwise
        it runs on and only the waiting stops.

        :raises BrokenExecutor: if the pool broke while the task was in it
        """
        await self.start()
        pool = self._current_pool()
        try:
            future = self.submit_to(pool, task)
        except BrokenExecutor as exc:  # broke before this task: it never ran, so retry once
            pool = await self._replace(pool, exc)
            future = self.submit_to(pool, task)
        try:
            result = await wait_future(future)
        except anyio.get_cancelled_exc_class():
            future.cancel()
            raise
        except BrokenExecutor as exc:
            with anyio.CancelScope(shield=True):
                await self._replace(pool, exc)
            raise
        if isinstance(pool, ProcessPoolExecutor):
            return unpack_outcome(result, task.name)
        return result

    def submit_to(self, pool: FuturesExecutor, task: Call) -> Future[Any]:
        """Submit ``task``'s call to ``pool``; a subclass may wrap it (Dask's does, to carry
        progress back).

        :raises BrokenExecutor: if the pool is broken
        """
        return _submit(pool, task)

    def _current_pool(self) -> FuturesExecutor:
        with self._lock:
            if self._pool is None:
                assert self._factory is not None
                pool = self._factory()
                if not isinstance(pool, FuturesExecutor):
                    raise TypeError(
                        f"PoolExecutor factory {self._factory!r} returned {pool!r}, "
                        "not a concurrent.futures.Executor"
                    )
                self._pool = pool
            return self._pool

    async def _replace(self, broken: FuturesExecutor, error: BrokenExecutor) -> FuturesExecutor:
        """Drop ``broken`` and return a new pool from the factory.

        :raises BrokenExecutor: ``error``, if there is no factory to make a new pool
        """
        if self._factory is None:
            if _NO_FACTORY not in getattr(error, "__notes__", ()):
                error.add_note(_NO_FACTORY)
            raise error
        with self._lock:
            if self._pool is broken:  # another task may have replaced it already
                self._pool = None
        await anyio.to_thread.run_sync(_shut_down, broken)
        return await anyio.to_thread.run_sync(self._current_pool)

    def __repr__(self) -> str:
        pool = self._pool if self._pool is not None else self._factory
        return f"<PoolExecutor {self.name!r} {pool!r}>"


def _makes_process_pools(factory: PoolFactory | None) -> bool:
    made_by = unwrap(factory)
    return isinstance(made_by, type) and issubclass(made_by, ProcessPoolExecutor)


def _shut_down(pool: FuturesExecutor) -> None:
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except TypeError:  # loky's and Dask's executors predate cancel_futures
        pool.shutdown(wait=True)


def _submit(pool: FuturesExecutor, task: Call) -> Future[Any]:
    if isinstance(pool, ProcessPoolExecutor):  # with the trace context, as offload's own
        return pool.submit(_worker.run_payload, payload_of(task), None, current_carrier())
    func, args, kwargs = task.func, task.args, task.kwargs
    if task.is_async:
        func, args, kwargs = run_to_end, (func, args, kwargs), {}
    if isinstance(pool, ThreadPoolExecutor):  # in a copy of the context, as anyio's threads
        return pool.submit(copy_context().run, func, *args, **kwargs)
    return pool.submit(func, *args, **kwargs)
