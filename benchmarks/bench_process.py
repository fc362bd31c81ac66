"""The process executor: dispatch cost, CPU-bound throughput, and the event loop's responsiveness.

Anchors, measured in the same run with interleaved rounds: raw
``loop.run_in_executor(ProcessPoolExecutor(mp_context=forkserver))`` for the round trip, and
offload's own thread executor for CPU-bound work. Run with
``.venv/bin/python benchmarks/bench_process.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import anyio
import anyio.to_thread
from harness import (
    Figure,
    Row,
    burn,
    calibrate,
    interleaved,
    load_average,
    per_call,
    percentile,
    print_table,
    ratio_row,
)

import offload

WORKERS = 2
TRIP_ROUNDS, TRIPS = 15, 200
CPU_ROUNDS, CPU_TASKS, CPU_SECONDS = 3, 40, 0.050
WAKE_ROUNDS, WAKE_SECONDS, WAKE_SLEEP = 5, 0.6, 0.001


def noop() -> None:
    pass


async def round_trips() -> dict[str, Figure]:
    """A trivial task, through a one-task list on offload vs raw run_in_executor."""
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver"))
    try:
        for _ in range(WORKERS * 2):  # start its workers, as offload's runtime does
            await loop.run_in_executor(pool, noop)

        async def raw() -> None:
            await loop.run_in_executor(pool, noop)

        async def through_offload() -> None:
            tasks = offload.BackgroundTasks(executor="process")
            tasks.add_task(noop)  # a new task each time: pickling is part of the trip
            await tasks()

        return await interleaved(
            {
                "raw run_in_executor": partial(per_call, raw, TRIPS),
                "offload process": partial(per_call, through_offload, TRIPS),
            },
            TRIP_ROUNDS,
        )
    finally:
        await anyio.to_thread.run_sync(pool.shutdown)


async def cpu_batch(executor: str, iterations: int) -> float:
    """Seconds to run the CPU-bound batch on ``executor``, all tasks at once."""
    tasks = offload.BackgroundTasks(executor=executor, concurrency="group")
    for _ in range(CPU_TASKS):
        tasks.add_task(burn, iterations)
    start = time.perf_counter()
    await tasks()
    return time.perf_counter() - start


async def wake_lateness(executor: str, iterations: int) -> float:
    """p99 of how late ``anyio.sleep(0.001)`` wakes while two CPU-bound tasks run."""
    tasks = offload.BackgroundTasks(executor=executor, concurrency="group")
    for _ in range(WORKERS):
        tasks.add_task(burn, iterations)
    lateness: list[float] = []
    done = anyio.Event()

    async def work() -> None:
        await tasks()
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(work)
        await anyio.sleep(0.05)  # let both tasks get going
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(WAKE_SLEEP)
            lateness.append(time.perf_counter() - start - WAKE_SLEEP)
    return percentile(lateness, 99)


async def measure() -> list[Row]:
    """Measure every comparison of this module and return its table rows."""
    cpu_iterations = calibrate(CPU_SECONDS)
    wake_iterations = calibrate(WAKE_SECONDS)
    config = offload.OffloadConfig(process_workers=WORKERS, thread_limit=WORKERS)
    async with offload.Runtime(config):
        trips = await round_trips()
        batches = await interleaved(
            {
                "offload process": partial(cpu_batch, "process", cpu_iterations),
                "offload thread": partial(cpu_batch, "thread", cpu_iterations),
            },
            CPU_ROUNDS,
        )
        wakes = await interleaved(
            {
                "offload process": partial(wake_lateness, "process", wake_iterations),
                "offload thread": partial(wake_lateness, "thread", wake_iterations),
            },
            WAKE_ROUNDS,
        )
    process, thread = batches["offload process"], batches["offload thread"]
    speedup = thread.median / process.median
    return [
        ratio_row(
            "process round trip of 1 trivial task",
            trips["offload process"],
            trips["raw run_in_executor"],
            limit=1.10,
        ),
        Row(
            f"{CPU_TASKS} CPU tasks of ~{CPU_SECONDS * 1e3:.0f} ms, {WORKERS} workers "
            f"(process {speedup:.2f}x faster)",
            process,
            thread,
            1e3,
            "ms",
            ">= 1.80x faster",
            speedup >= 1.8,
            limit=1 / 1.8,
        ),
        Row(
            f"p99 lateness of anyio.sleep({WAKE_SLEEP}) during {WORKERS} CPU tasks",
            wakes["offload process"],
            wakes["offload thread"],
            1e3,
            "ms",
            "process <= 2.0 ms",
            wakes["offload process"].median <= 0.002,
        ),
    ]


def main() -> str:
    load = load_average()
    rows = anyio.run(measure)
    return print_table(
        f"Process executor (asyncio, {multiprocessing.cpu_count()} CPUs, {WORKERS} workers, "
        f"load average {load} at the start)",
        rows,
        note=(
            "Anchors: raw `loop.run_in_executor(ProcessPoolExecutor(mp_context=forkserver))` "
            "for the round trip (a new offload task each time, so pickling is included); "
            "offload's own thread executor for CPU-bound pure-Python work, where the GIL "
            "lets one thread run at a time."
        ),
    )


if __name__ == "__main__":
    main()
