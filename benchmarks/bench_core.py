"""The hot path: one request with one background task, and one hop to a thread.

Anchors, measured in the same run: Starlette's own ``BackgroundTask`` on the same app, and
raw ``anyio.to_thread.run_sync``. Run with ``make bench`` or
``.venv/bin/python benchmarks/bench_core.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from harness import Row, interleaved, per_call, print_table, ratio_row
from starlette.background import BackgroundTask as StarletteTask
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import offload

ROUNDS = 15
REQUESTS = 300
HOPS = 500


def sync_noop() -> None:
    pass


async def async_noop() -> None:
    pass


def app_with(make_background: Callable[[], Any]) -> ASGIApp:
    """An ASGI app answering every request with a small body and one background task."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok", background=make_background())(scope, receive, send)

    return app


async def request_cycle(app: ASGIApp) -> None:
    """One whole ASGI HTTP request cycle, background task included, with no network."""
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "query_string": b"",
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    await app(scope, receive, send)


def cycles(app: ASGIApp) -> Callable[[], Awaitable[float]]:
    return lambda: per_call(lambda: request_cycle(app), REQUESTS)


async def measure() -> list[Row]:
    """Measure every comparison of this module and return its table rows."""
    async with offload.Runtime():
        requests = await interleaved(
            {
                "starlette async": cycles(app_with(lambda: StarletteTask(async_noop))),
                "offload async": cycles(app_with(lambda: offload.BackgroundTask(async_noop))),
                "starlette sync": cycles(app_with(lambda: StarletteTask(sync_noop))),
                "offload sync": cycles(app_with(lambda: offload.BackgroundTask(sync_noop))),
            },
            ROUNDS,
        )
        one_task = offload.BackgroundTasks(executor="thread")
        one_task.add_task(sync_noop)
        hops = await interleaved(
            {
                "anyio.to_thread.run_sync": lambda: per_call(
                    lambda: anyio.to_thread.run_sync(sync_noop), HOPS
                ),
                "offload thread": lambda: per_call(one_task, HOPS),
            },
            ROUNDS,
        )
    return [
        ratio_row(
            "request + 1 async task (inline)",
            requests["offload async"],
            requests["starlette async"],
            limit=1.10,
        ),
        ratio_row(
            "request + 1 sync task (thread)",
            requests["offload sync"],
            requests["starlette sync"],
            limit=1.10,
        ),
        ratio_row(
            "thread dispatch of 1 task",
            hops["offload thread"],
            hops["anyio.to_thread.run_sync"],
            limit=1.10,
        ),
    ]


def main() -> str:
    rows = anyio.run(measure)
    return print_table("Hot path (asyncio, time per request or task)", rows)


if __name__ == "__main__":
    main()
