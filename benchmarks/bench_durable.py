"""Durable task lists: what journaling costs, against detached lists that are not durable.

Three figures, each against the same lists without ``durable=True`` on the same runtime (one
with a journal), measured in the same run (interleaved rounds, medians):

- durable lists end to end: scheduled, run, and gone from the journal, target at most 3x
  the time of a detached list, and at least 3,000 lists/s;
- what an endpoint pays to schedule a durable list of one task (build, ``add_task``,
  ``await``; the journal write is in it), for information;
- the event loop's worst lateness (how late a 1 ms timer wakes) while 2,000 lists are
  scheduled, one per loop turn, and run. The journal's bookkeeping (leases, outcomes) runs
  on a thread of its own: it must add less than 1 ms to the anchor's. Measured with
  Python's cyclic garbage collector paused, in both variants, so that the figure is the
  journal's; and again with it running, for information (a collection of the young
  objects of 2,000 lists in flight takes a millisecond or more, and the durable lists'
  extra objects make collections more frequent).

Run with ``make bench`` or ``.venv/bin/python benchmarks/bench_durable.py``.
"""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
from harness import Figure, Rate, Row, interleaved, load_average, print_table

import offload

ROUNDS = 9
SCHEDULED = 500  # lists per scheduling sample
LISTS = 2_000  # lists per throughput and lateness sample
THROUGHPUT_TARGET = 3_000  # lists/s
LATENESS_ADDED = 0.001  # s the durable lists may add to the anchor's worst lateness
TICK = 0.001

ended = 0  # tasks ended in this process; a durable task must be importable by name


async def count_end() -> None:
    global ended
    ended += 1


def journal_entries(path: Path) -> int:
    """How many tasks the journal holds, read as a reader (which blocks no writer)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT count(*) FROM tasks").fetchone()
    return int(count)


async def schedule(durable: bool, count: int, *, yielding: bool = False) -> float:
    """Schedule ``count`` detached one-task lists; return the seconds it took."""
    start = time.perf_counter()
    for _ in range(count):
        tasks = offload.BackgroundTasks(durable=durable, detach=True)
        tasks.add_task(count_end)
        await tasks()
        if yielding:  # one list per turn of the loop, as requests come
            await anyio.lowlevel.checkpoint()
    return time.perf_counter() - start


async def until_done(target: int, journal: Path | None) -> None:
    """Wait until ``target`` tasks have ended, and the journal (if given) is empty."""
    while ended < target:  # noqa: ASYNC110 (the runtime's supervisor ends them)
        await anyio.sleep(0.001)
    if journal is not None:
        while await anyio.to_thread.run_sync(journal_entries, journal):  # noqa: ASYNC110 (another thread empties it)
            await anyio.sleep(0.005)


async def scheduling(durable: bool, journal: Path) -> float:
    """Seconds per list to schedule ``SCHEDULED`` lists (then waits for them to end)."""
    target = ended + SCHEDULED
    seconds = await schedule(durable, SCHEDULED)
    await until_done(target, journal if durable else None)
    return seconds / SCHEDULED


async def end_to_end(durable: bool, journal: Path) -> float:
    """Seconds per list, from the first of ``LISTS`` scheduled to the last gone."""
    target = ended + LISTS
    start = time.perf_counter()
    await schedule(durable, LISTS)
    await until_done(target, journal if durable else None)
    return (time.perf_counter() - start) / LISTS


async def lateness(durable: bool, journal: Path, *, collector: bool = True) -> float:
    """The worst lateness of a ``TICK`` timer while ``LISTS`` lists are scheduled and run.

    :param collector: whether Python's cyclic garbage collector may run meanwhile; paused,
        the figure is the journal's own (its bookkeeping, its writes) without the pauses of
        the collector, which the durable lists' extra objects make more frequent
    """
    worst = 0.0
    target = ended + LISTS
    if not collector:
        gc.collect()
        gc.disable()

    async def tick() -> None:
        nonlocal worst
        while True:
            start = time.perf_counter()
            await anyio.sleep(TICK)
            worst = max(worst, time.perf_counter() - start - TICK)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            await schedule(durable, LISTS, yielding=True)
            await until_done(target, journal if durable else None)
            group.cancel_scope.cancel()
    finally:
        gc.enable()
    return worst


async def measure() -> list[Row]:
    with tempfile.TemporaryDirectory() as directory:
        journal = Path(directory, "bench.journal")
        config = offload.OffloadConfig(journal=str(journal), shutdown_timeout=60)
        async with offload.Runtime(config):
            figures: dict[str, dict[str, Figure]] = {}
            for name, measure_one in (
                ("scheduling", scheduling),
                ("end to end", end_to_end),
                ("lateness", partial(lateness, collector=False)),
                ("lateness with the collector", lateness),
            ):
                variants = {
                    "detached": partial(measure_one, False, journal),
                    "durable": partial(measure_one, True, journal),
                }
                for variant in variants.values():  # warm up
                    await variant()
                figures[name] = await interleaved(variants, ROUNDS)
    durable, detached = figures["end to end"]["durable"], figures["end to end"]["detached"]
    worst, anchor = figures["lateness"]["durable"], figures["lateness"]["detached"]
    return [
        Row(
            f"durable lists of 1 task, {LISTS:,} scheduled at once, end to end (run, and gone "
            "from the journal): throughput",
            Rate(durable.label, durable.samples),
            Rate(detached.label, detached.samples),
            1.0,
            "lists/s",
            f"<= 3.00x and >= {THROUGHPUT_TARGET:,} lists/s",
            durable.median / detached.median <= 3.0 and 1 / durable.median >= THROUGHPUT_TARGET,
            limit=3.0,
        ),
        Row(
            "what an endpoint pays to schedule a durable list of 1 task (the journal write)",
            figures["scheduling"]["durable"],
            figures["scheduling"]["detached"],
            1e6,
            "µs",
            "-",
            None,
        ),
        Row(
            f"worst event-loop lateness while {LISTS:,} lists are scheduled and run, the "
            "garbage collector paused",
            worst,
            anchor,
            1e3,
            "ms",
            f"<= anchor + {LATENESS_ADDED * 1e3:g} ms",
            worst.median <= anchor.median + LATENESS_ADDED,
        ),
        Row(
            "the same with the garbage collector running",
            figures["lateness with the collector"]["durable"],
            figures["lateness with the collector"]["detached"],
            1e3,
            "ms",
            "-",
            None,
        ),
    ]


def main() -> str:
    load = load_average()
    rows = anyio.run(measure)
    return print_table(
        f"Durable task lists (asyncio; load average {load} at the start)",
        rows,
        note=(
            "Anchor: the same one-task lists with `detach=True` but not durable, on the same "
            "runtime (one with a journal, in a temporary directory), so the difference is "
            "the journal's: the write before the endpoint returns, and the bookkeeping of "
            "each task's start and end on the journal's own thread. The journal is SQLite in "
            "WAL mode with synchronous=NORMAL on this machine's disk."
        ),
    )


if __name__ == "__main__":
    main()
