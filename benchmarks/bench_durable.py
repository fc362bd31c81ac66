"""Durable task lists: what journaling costs, against detached lists that are not durable.

Three figures, each against the same lists without ``durable=True`` on the same runtime (one
with a journal), measured in the same run (interleaved rounds, medians):

- scheduling a durable list of one task (build, ``add_task``, ``await``; the journal write
  is in it), target at most 3x;
- durable lists end to end: scheduled, run, and gone from the journal, target at least
  3,000 lists/s;
- the event loop's worst lateness (how late a 1 ms timer wakes) while 2,000 lists are
  scheduled, one per loop turn, and run. The journal's bookkeeping (leases, outcomes) runs
  on a thread of its own: it must add less than 1 ms to the anchor's.

Run with ``make bench`` or ``.venv/bin/python benchmarks/bench_durable.py``.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from harness import Figure, Rate, Row, interleaved, load_average, print_table, ratio_row

import offload
from offload._journal import Journal

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
    journal = Journal(path)
    journal.open()
    try:
        return len(journal.entries())
    finally:
        journal.close()


async def schedule(durable: bool, count: int, *, yielding: bool = False) -> float:
    """Schedule ``count`` detached one-task lists; return the seconds it took."""
    start = time.perf_counter()
    for _ in range(count):
        tasks = offload.BackgroundTasks(durable=durable, detach=True)
        tasks.add_task(count_end)
        await tasks()
        if yielding:  # one list per turn of the loop, as requests come
            await anyio.sleep(0)
    return time.perf_counter() - start


async def until_done(target: int, journal: Path | None) -> None:
    """Wait until ``target`` tasks have ended, and the journal (if given) is empty."""
    while ended < target:  # noqa: ASYNC110 (the runtime's loop ends them)
        await anyio.sleep(0.001)
    if journal is not None:
        while await anyio.to_thread.run_sync(journal_entries, journal):
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


async def lateness(durable: bool, journal: Path) -> float:
    """The worst lateness of a ``TICK`` timer while ``LISTS`` lists are scheduled and run."""
    worst = 0.0
    target = ended + LISTS

    async def tick() -> None:
        nonlocal worst
        while True:
            start = time.perf_counter()
            await anyio.sleep(TICK)
            worst = max(worst, time.perf_counter() - start - TICK)

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        await schedule(durable, LISTS, yielding=True)
        await until_done(target, journal if durable else None)
        group.cancel_scope.cancel()
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
                ("lateness", lateness),
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
        ratio_row(
            "scheduling a durable list of 1 task vs a detached one (the journal write in it)",
            figures["scheduling"]["durable"],
            figures["scheduling"]["detached"],
            limit=3.0,
        ),
        Row(
            f"durable lists of 1 task, {LISTS:,} scheduled at once, until gone from the "
            "journal, throughput",
            Rate(durable.label, durable.samples),
            Rate(detached.label, detached.samples),
            1.0,
            "lists/s",
            f">= {THROUGHPUT_TARGET:,} lists/s",
            1 / durable.median >= THROUGHPUT_TARGET,
        ),
        Row(
            f"worst event-loop lateness while {LISTS:,} lists are scheduled and run",
            worst,
            anchor,
            1e3,
            "ms",
            f"<= anchor + {LATENESS_ADDED * 1e3:g} ms",
            worst.median <= anchor.median + LATENESS_ADDED,
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
