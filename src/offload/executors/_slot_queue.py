"""SlotQueue: hands a fixed set of slots to tasks, in the order they ask, across event loops."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Generic, TypeVar

import anyio

from ._futures import wait_future

T = TypeVar("T")


class SlotQueue(Generic[T]):
    """A limiter whose tokens are objects: each task borrows one slot and gives it back.

    Waiting tasks are served first come, first served; free slots last in, first out.

    Unlike :class:`anyio.CapacityLimiter` it belongs to no event loop, so tasks on several
    loops (an app's and a test client's portal) can share one set of worker processes.

    :param slots: the slots to hand out
    """

    def __init__(self, slots: Iterable[T]) -> None:
        self._lock = threading.Lock()
        self._free: deque[T] = deque(slots)
        self._waiters: deque[Future[T]] = deque()
        self._closed = False

    async def acquire(self) -> T:
        """Wait for a free slot and take it.

        :raises anyio.ClosedResourceError: if the queue is or gets closed
        """
        with self._lock:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._free:
                # The slot used last: its worker and its pool's threads are still warm.
                return self._free.pop()
            waiter: Future[T] = Future()
            self._waiters.append(waiter)
        try:
            return await wait_future(waiter)
        except anyio.get_cancelled_exc_class():
            with self._lock:
                if waiter.cancel():  # still queued: just leave the queue
                    self._waiters.remove(waiter)
                    raise
            # A slot was handed over just as the wait was cancelled: pass it on.
            if waiter.exception() is None:
                self.release(waiter.result())
            raise

    def release(self, slot: T) -> bool:
        """Give ``slot`` back, to the longest waiting task if there is one.

        :return: ``False`` if the queue is closed, in which case the caller disposes of the slot
        """
        with self._lock:
            if self._closed:
                return False
            if self._waiters:
                # Under the lock, so a waiter being cancelled cannot miss the hand-over.
                self._waiters.popleft().set_result(slot)
            else:
                self._free.append(slot)
            return True

    def close(self) -> list[T]:
        """Stop handing out slots; fail the tasks still waiting.

        :return: the slots that were free; the borrowed ones are refused when given back
        """
        with self._lock:
            self._closed = True
            for waiter in self._waiters:
                waiter.set_exception(anyio.ClosedResourceError())
            self._waiters.clear()
            free = list(self._free)
            self._free.clear()
            return free
