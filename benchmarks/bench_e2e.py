"""End to end on a real server: CPU-heavy background tasks, and how the server answers meanwhile.

A uvicorn server on 127.0.0.1 (a subprocess, see ``server_app.py``) gets 20 requests in a row,
each scheduling a ~0.1 s pure-Python CPU task, while a client probes ``GET /ping`` every
10 ms, on a fixed schedule. Anchor: Starlette's own ``BackgroundTask``, which runs the sync
task in anyio's thread pool; against it, offload's mixin with ``executor="process"`` (2
pre-warmed workers). Each task creates a marker file when done, so the client sees it end
without asking the server.
Run with ``make bench`` or ``.venv/bin/python benchmarks/bench_e2e.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import httpx
from harness import (
    Figure,
    Row,
    calibrate,
    interleaved_metrics,
    load_average,
    percentile,
    print_table,
    ratio_row,
    server,
)

ROUNDS, REQUESTS, TASK_SECONDS, PROBE_EVERY = 5, 20, 0.100, 0.010
ANCHOR, OFFLOAD = "starlette BackgroundTask", "offload process"
ROUTES = {ANCHOR: "/cpu/starlette", OFFLOAD: "/cpu/offload"}


async def load_once(url: str, route: str, iterations: int, requests: int) -> dict[str, float]:
    """Send ``requests`` CPU-task requests one after another while probing ``/ping``; return
    the pings' p50 and p99 and the seconds until every task had ended, all in seconds."""
    pings: list[float] = []
    all_done = anyio.Event()

    async def ping(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        (await client.get("/ping")).raise_for_status()
        pings.append(time.perf_counter() - start)

    async def probe(client: httpx.AsyncClient) -> None:
        # On a fixed schedule, never waiting for the last answer: waiting would send fewer
        # probes while the server stalls, and hide the stalls (coordinated omission).
        async with anyio.create_task_group() as in_flight:
            next_at = time.perf_counter()
            while not all_done.is_set():
                in_flight.start_soon(ping, client)
                next_at += PROBE_EVERY
                await anyio.sleep(max(0.0, next_at - time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix="offload-bench-") as markers:
        async with (
            httpx.AsyncClient(base_url=url, timeout=60) as client,
            httpx.AsyncClient(base_url=url, timeout=60) as prober,
            anyio.create_task_group() as group,
        ):
            await prober.get("/ping")  # connect before the clock starts
            await client.get("/ping")
            start = time.perf_counter()
            group.start_soon(probe, prober)
            for number in range(requests):
                marker = str(Path(markers, str(number)))
                params: dict[str, str | int] = {"iterations": iterations, "marker": marker}
                (await client.get(route, params=params)).raise_for_status()
            await wait_for_files(markers, requests)
            done = time.perf_counter() - start
            all_done.set()
    return {"p50": percentile(pings, 50), "p99": percentile(pings, 99), "done": done}


async def wait_for_files(directory: str, count: int) -> None:
    """Return once ``directory`` holds ``count`` files.

    Polled: the files come from other processes, which cannot set an event of this loop.
    Listing a small local folder takes microseconds, less than a hop to a thread would.
    """
    while len(os.listdir(directory)) < count:  # noqa: ASYNC110
        await anyio.sleep(0.005)


async def measure_on(url: str, iterations: int) -> dict[str, dict[str, Figure]]:
    for route in ROUTES.values():  # warm up: first requests, thread pool, worker imports
        await load_once(url, route, iterations, 2)
    return await interleaved_metrics(
        {
            label: partial(load_once, url, route, iterations, REQUESTS)
            for label, route in ROUTES.items()
        },
        ROUNDS,
    )


def measure() -> list[Row]:
    """Measure the comparison of this module and return its table rows."""
    iterations = calibrate(TASK_SECONDS)
    with server("server_app") as url:
        figures = anyio.run(measure_on, url, iterations)
    offload, anchor = figures[OFFLOAD], figures[ANCHOR]
    under_load = f"during {REQUESTS} CPU tasks of ~{TASK_SECONDS * 1e3:.0f} ms"
    return [
        Row(
            f"/ping p50 {under_load}",
            offload["p50"],
            anchor["p50"],
            1e3,
            "ms",
            "",
            None,
        ),
        ratio_row(
            f"/ping p99 {under_load}",
            offload["p99"],
            anchor["p99"],
            limit=0.10,
            scale=1e3,
            unit="ms",
        ),
        ratio_row(
            f"all {REQUESTS} tasks done, from the first request",
            offload["done"],
            anchor["done"],
            limit=0.70,
            scale=1e3,
            unit="ms",
        ),
    ]


def main() -> str:
    load = load_average()
    rows = measure()
    return print_table(
        f"End to end on uvicorn (asyncio, 2 workers; load average {load} at the start)",
        rows,
        note=(
            f"{REQUESTS} requests in a row to a uvicorn server on 127.0.0.1, each scheduling "
            f"a ~{TASK_SECONDS * 1e3:.0f} ms pure-Python CPU task, while `GET /ping` is probed "
            f"every {PROBE_EVERY * 1e3:.0f} ms (open loop: whether or not the last probe "
            "has been answered); the client and the server are separate processes. "
            "Anchor: Starlette's `BackgroundTask` (a sync task, so anyio's thread pool); "
            'offload: the same task with `executor="process"`. '
            f"{ROUNDS} interleaved rounds."
        ),
    )


if __name__ == "__main__":
    main()
