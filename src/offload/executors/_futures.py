"""Awaiting a ``concurrent.futures.Future`` from any anyio event loop."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import TypeVar

import anyio
from anyio.lowlevel import current_token

T = TypeVar("T")


async def wait_future(future: Future[T]) -> T:
    """Wait for ``future`` without blocking the event loop, and return its result.

    Works on asyncio and trio alike, and from a loop in any thread: the future's done
    callback (run in whatever thread completes it) wakes this loop through its token,
    without ever blocking that thread. Cancelling the wait leaves ``future`` alone; the
    caller decides whether to cancel it or stop the work behind it.

    :raises BaseException: what the future raised
    """
    if not future.done():
        event = anyio.Event()
        token = current_token()

        def wake(_: Future[T]) -> None:
            # A pool's manager thread calls this; it must never block on the loop. If the
            # loop has ended, nobody is waiting any more.
            with contextlib.suppress(anyio.RunFinishedError):
                token.backend_class.run_sync_soon(event.set, (), token.native_token)

        future.add_done_callback(wake)
        await event.wait()
    return future.result()
