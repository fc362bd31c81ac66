"""The hot path: one request with one background task, and one hop to a thread.

Anchors, measured in the same run: Starlette's own ``BackgroundTask`` on the same app, and
raw ``anyio.to_thread.run_sync``. A request is measured twice: as a bare ASGI call (no
server, no network: offload's cost at its most visible) and through a real uvicorn server
with an httpx keep-alive client on 127.0.0.1 (what a user's request costs). Run with
``make bench`` or ``.venv/bin/python benchmarks/bench_core.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import anyio.to_thread
import httpx
from harness import Row, interleaved, load_average, per_call, print_table, ratio_row, server
from starlette.background import BackgroundTask as StarletteTask
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import offload
import offload.starlette

ROUNDS = 15
REQUESTS = 300
HOPS = 500
SERVER_ROUNDS, SERVER_REQUESTS = 15, 200


def sync_noop() -> None:
    pass


async def async_noop() -> None:
    pass


def starlette_app(noop: Callable[[], object]) -> ASGIApp:
    """An ASGI app answering every request with a small body and Starlette's own task."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok", background=StarletteTask(noop))(scope, receive, send)

    return app


def offload_app(noop: Callable[[], object]) -> ASGIApp:
    """The same app, with offload's response mixin as users write it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = offload.starlette.PlainTextResponse(
            "ok", backgrounds=[offload.BackgroundTask(noop)]
        )
        await response(scope, receive, send)

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


async def measure_asgi() -> dict[str, Row]:
    requests = await interleaved(
        {
            "starlette async": cycles(starlette_app(async_noop)),
            "offload async": cycles(offload_app(async_noop)),
            "starlette sync": cycles(starlette_app(sync_noop)),
            "offload sync": cycles(offload_app(sync_noop)),
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
    return {
        "asgi async": ratio_row(
            "ASGI call, no server: response + 1 async task (inline)",
            requests["offload async"],
            requests["starlette async"],
            limit=1.10,
        ),
        "asgi sync": ratio_row(
            "ASGI call, no server: response + 1 sync task (thread)",
            requests["offload sync"],
            requests["starlette sync"],
            limit=1.10,
        ),
        "thread": ratio_row(
            "thread dispatch of 1 task",
            hops["offload thread"],
            hops["anyio.to_thread.run_sync"],
            limit=1.05,
        ),
    }


async def measure_server(url: str) -> dict[str, Row]:
    """Sequential requests on one keep-alive connection: the response time a client sees,
    with the background task run by the server meanwhile (so its cost is included)."""
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) as client:

        async def get(path: str) -> None:
            (await client.get(path)).raise_for_status()

        variants = {
            f"{framework} {kind}": partial(
                per_call, partial(get, f"/noop/{framework}/{kind}"), SERVER_REQUESTS
            )
            for framework in ("starlette", "offload")
            for kind in ("async", "sync")
        }
        for measure in variants.values():  # warm up: first requests, imports, thread pools
            await measure()
        figures = await interleaved(variants, SERVER_ROUNDS)
    return {
        f"server {kind}": ratio_row(
            f"uvicorn + httpx on 127.0.0.1: request + 1 {kind} task ({executor})",
            figures[f"offload {kind}"],
            figures[f"starlette {kind}"],
            limit=1.10,
        )
        for kind, executor in (("async", "inline"), ("sync", "thread"))
    }


async def measure() -> list[Row]:
    """Measure every comparison of this module and return its table rows."""
    async with offload.Runtime():
        rows = await measure_asgi()
    with server("server_app") as url:
        rows |= await measure_server(url)
    order = ["asgi async", "asgi sync", "server async", "server sync", "thread"]
    return [rows[key] for key in order]


def main() -> str:
    load = load_average()
    rows = anyio.run(measure)
    return print_table(
        f"Hot path (asyncio, time per request or task; load average {load} at the start)",
        rows,
        note=(
            "Anchors: the same response with Starlette's own `BackgroundTask`; raw "
            "`anyio.to_thread.run_sync`. offload's responses are "
            "`offload.starlette.PlainTextResponse(..., backgrounds=[offload.BackgroundTask(f)])`."
            " The ASGI rows call the app directly (no server, no network), which shows "
            "offload's own cost against a ~3 µs Starlette cycle; the uvicorn rows are what a "
            "request costs a client of a real server."
        ),
    )


if __name__ == "__main__":
    main()
