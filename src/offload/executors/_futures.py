"""Awaiting a ``concurrent.futures.Future`` from any anyio event loop, and calling into a loop
from any thread."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
from anyio.lowlevel import EventLoopToken, current_token

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
            call_soon(token, event.set)

        future.add_done_callback(wake)
        await event.wait()
    return future.result()


def call_soon(token: EventLoopToken, func: Callable[..., object], *args: Any) -> bool:
    """Have the event loop of ``token`` call ``func(*args)`` soon, from any thread, without
    ever blocking; return ``False`` if that loop has ended (and so nothing will be called)."""
    try:
        token.backend_class.run_sync_soon(func, args, token.native_token)
    except anyio.RunFinishedError:
        return False
    return True
