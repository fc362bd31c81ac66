"""Task lists: the cost of each inline task, of a one-task list, of ``concurrency="group"``,
the throughput of detached lists, and the memory of a long list.

Anchors, measured in the same run: Starlette's own ``BackgroundTasks`` with the same async
no-op tasks, and offload's own sequential lists for ``concurrency="group"``. Every timed list
is built, filled and awaited, as an endpoint does. The memory of a list is measured in a fresh
subprocess per sample, so that neither list's allocations linger in the other's figure.
Run with ``make bench`` or ``.venv/bin/python benchmarks/bench_lists.py``.
"""

from __future__ import annotations

import sys
import textwrap
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

import anyio
from harness import (
    BENCHMARKS,
    Figure,
    Rate,
    Row,
    interleaved,
    load_average,
    per_call,
    print_table,
    ratio_row,
)
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from starlette.background import BackgroundTasks as StarletteTasks

import offload
import offload.fastapi
import offload.metrics
import offload.tracing

# Importing offload.fastapi adds its hooks for every runtime: off, but in the row that
# measures them, so that no other benchmark of this run pays for them.
offload.remove_hooks(offload.fastapi.telemetry_hooks)

ROUNDS = 15
LONG, LONG_LISTS = 100, 30  # tasks in a long list; lists per sample
SHORT_LISTS = 1_000  # one-task lists per sample
DETACH_ROUNDS, DETACHED = 9, 5_000  # detached lists per sample
DETACHED_TARGET = 10_000  # lists/s
MEMORY_ROUNDS, MEMORY_TASKS = 3, 100_000
MIB = 2**20


async def async_noop() -> None:
    pass


def starlette_list(size: int) -> Callable[[], Awaitable[None]]:
    """Return a coroutine function that builds, fills and runs one Starlette list."""

    async def run() -> None:
        tasks = StarletteTasks()
        for _ in range(size):
            tasks.add_task(async_noop)
        await tasks()

    return run


def offload_list(
    size: int, concurrency: Literal["sequential", "group"] | None = None
) -> Callable[[], Awaitable[None]]:
    """The same with an offload list of the given ``concurrency`` (the config's if ``None``)."""

    async def run() -> None:
        tasks = offload.BackgroundTasks(concurrency=concurrency)
        for _ in range(size):
            tasks.add_task(async_noop)
        await tasks()

    return run


async def per_task(run_list: Callable[[], Awaitable[None]], lists: int, size: int) -> float:
    """Return the mean seconds per task of ``lists`` lists of ``size`` tasks."""
    return await per_call(run_list, lists) / size


async def measure_inline() -> dict[str, Row]:
    """Time per task of long lists, and per list of one-task lists."""
    long: dict[str, Callable[[], Awaitable[float]]] = {
        "starlette BackgroundTasks": partial(per_task, starlette_list(LONG), LONG_LISTS, LONG),
        "offload sequential": partial(per_task, offload_list(LONG), LONG_LISTS, LONG),
        "offload group": partial(
            per_task, offload_list(LONG, concurrency="group"), LONG_LISTS, LONG
        ),
    }
    long["offload with metrics"] = with_hooks(offload.metrics.install(CollectorRegistry()))
    # The SDK's tracer with no exporter: the cost of the spans themselves.
    long["offload with tracing"] = with_hooks(offload.tracing.install(TracerProvider()))
    # What an app that imports offload.fastapi pays outside FastAPI's telemetry.
    long["offload with fastapi"] = with_hooks(offload.fastapi.telemetry_hooks)
    short: dict[str, Callable[[], Awaitable[float]]] = {
        "starlette BackgroundTasks": partial(per_call, starlette_list(1), SHORT_LISTS),
        "offload": partial(per_call, offload_list(1), SHORT_LISTS),
    }
    for measure in [*long.values(), *short.values()]:  # warm up: lazy imports, executors
        await measure()
    lists = await interleaved(long, ROUNDS)
    singles = await interleaved(short, ROUNDS)
    return {
        "per task": ratio_row(
            f"per inline task, lists of {LONG} async no-ops",
            lists["offload sequential"],
            lists["starlette BackgroundTasks"],
            limit=2.0,
        ),
        "one task": ratio_row(
            "a list of 1 async task: build, add_task, await (the per-request shape)",
            singles["offload"],
            singles["starlette BackgroundTasks"],
            limit=2.5,
        ),
        "metrics": hooks_row("metrics", lists),
        "tracing": hooks_row("tracing", lists),
        "fastapi": hooks_row("fastapi", lists),
        "group": ratio_row(
            f'per inline task, concurrency="group" vs sequential, lists of {LONG}',
            lists["offload group"],
            lists["offload sequential"],
            limit=2.0,
        ),
    }


def with_hooks(hooks: offload.TaskHooks) -> Callable[[], Awaitable[float]]:
    """The sequential variant with ``hooks`` on, and on only while it runs: installing them
    added them for every runtime."""
    offload.remove_hooks(hooks)

    async def measure() -> float:
        offload.add_hooks(hooks)
        try:
            return await per_task(offload_list(LONG), LONG_LISTS, LONG)
        finally:
            offload.remove_hooks(hooks)

    return measure


def hooks_row(module: str, lists: dict[str, Figure]) -> Row:
    """The cost of ``offload.<module>``'s hooks, for information: no target."""
    return Row(
        f"per inline task with offload.{module}'s hooks on vs none, lists of {LONG}",
        lists[f"offload with {module}"],
        lists["offload sequential"],
        1e6,
        "µs",
        "-",
        None,
    )


class Countdown:
    """A task that counts its runs and sets :attr:`done` at the ``total``-th."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.runs = 0
        self.done = anyio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs == self.total:
            self.done.set()


async def detached_lists() -> float:
    """Seconds per list of ``DETACHED`` detached one-task lists, from the first scheduled to
    the last ended; the runtime entered runs them."""
    countdown = Countdown(DETACHED)
    start = time.perf_counter()
    for _ in range(DETACHED):
        tasks = offload.BackgroundTasks(detach=True)
        tasks.add_task(countdown)
        await tasks()
    await countdown.done.wait()
    return (time.perf_counter() - start) / DETACHED


async def started_lists() -> float:
    """The same with Starlette's lists, each started in one task group: the nearest thing
    Starlette has to detaching."""
    countdown = Countdown(DETACHED)
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(DETACHED):
            tasks = StarletteTasks()
            tasks.add_task(countdown)
            group.start_soon(tasks)
        await countdown.done.wait()
        elapsed = time.perf_counter() - start
    return elapsed / DETACHED


async def measure_detached() -> Row:
    variants = {"starlette in a task group": started_lists, "offload detached": detached_lists}
    config = offload.OffloadConfig(detach=True, max_pending=None)
    async with offload.Runtime(config):
        for measure in variants.values():  # warm up
            await measure()
        figures = await interleaved(variants, DETACH_ROUNDS)
    detached, anchor = figures["offload detached"], figures["starlette in a task group"]
    return Row(
        f"detached lists of 1 inline task, {DETACHED:,} scheduled at once, throughput",
        Rate(detached.label, detached.samples),
        Rate(anchor.label, anchor.samples),
        1.0,
        "lists/s",
        f">= {DETACHED_TARGET:,} lists/s",
        1 / detached.median >= DETACHED_TARGET,
    )


def list_memory(framework: str, size: int = MEMORY_TASKS) -> int:
    """Return the bytes that building one list of ``size`` async no-ops allocates, as
    tracemalloc sees them once the list is built and before it runs.

    Meant for a fresh process (see :func:`memory_sample`): tracing starts after every import,
    a warm-up list and the runtime, so only the list is counted.
    """

    def build(count: int) -> object:
        tasks = offload.BackgroundTasks() if framework == "offload" else StarletteTasks()
        for _ in range(count):
            tasks.add_task(async_noop)
        return tasks

    async def measure() -> int:
        async with offload.Runtime():
            build(1)
            tracemalloc.start()
            try:
                tasks = build(size)
                current, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            del tasks
            return current

    return anyio.run(measure)


async def memory_sample(framework: str) -> float:
    """Run :func:`list_memory` in a fresh subprocess; return its bytes."""
    code = f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        import bench_lists
        print(bench_lists.list_memory({framework!r}))
    """
    result = await anyio.run_process([sys.executable, "-c", textwrap.dedent(code)])
    return float(result.stdout)


async def measure_memory() -> Row:
    figures = await interleaved(
        {
            "starlette BackgroundTasks": partial(memory_sample, "starlette"),
            "offload": partial(memory_sample, "offload"),
        },
        MEMORY_ROUNDS,
    )
    return ratio_row(
        f"memory of 1 list of {MEMORY_TASKS:,} inline tasks, built, not yet run",
        figures["offload"],
        figures["starlette BackgroundTasks"],
        limit=1.2,
        scale=1 / MIB,
        unit="MiB",
    )


async def measure() -> list[Row]:
    """Measure every comparison of this module and return its table rows."""
    async with offload.Runtime():
        rows = await measure_inline()
    rows["detached"] = await measure_detached()
    rows["memory"] = await measure_memory()
    order = ["per task", "metrics", "tracing", "fastapi", "one task", "group", "detached", "memory"]
    return [rows[key] for key in order]


def main() -> str:
    load = load_average()
    rows = anyio.run(measure)
    return print_table(
        f"Task lists (asyncio, time per task or list; load average {load} at the start)",
        rows,
        note=(
            "Anchors: Starlette's `starlette.background.BackgroundTasks` with the same async "
            'no-op tasks; offload\'s own sequential lists for `concurrency="group"`. Each '
            "timed list is built, filled with `add_task` and awaited, as in an endpoint. "
            f"Detached: {DETACHED:,} one-task lists with `detach=True` under a `Runtime`, "
            "until the last has ended, against Starlette's lists each started with "
            "`task_group.start_soon(tasks)`; its ratio is offload's time per list over the "
            "anchor's (the anchor's throughput over offload's). Memory: tracemalloc's "
            "current traced memory once the list is built, in a fresh process per sample."
        ),
    )


if __name__ == "__main__":
    main()
