"""The Dask executor against the process executor: what a task pays to leave the machine.

Starts a real local cluster (``dask scheduler`` and two single-threaded ``dask worker``
processes, each under its nanny, on 127.0.0.1), and measures in the same run, with
interleaved rounds:

- the round trip of one trivial task, through a one-task list, on ``"dask"`` and on
  ``"process"`` (the anchor); and on ``"dask"`` against raw ``client.submit().result()``,
  which is offload's own cost on top of Dask's;
- the time of a batch of CPU-bound tasks on 2 Dask workers against 2 worker processes.

A local cluster is the best case for Dask (no network); across machines, add the network's
round trips. Run with ``.venv/bin/python benchmarks/bench_dask.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from distributed import Client
from harness import (
    BENCHMARKS,
    Figure,
    Row,
    burn,
    calibrate,
    interleaved,
    load_average,
    per_call,
    print_table,
)

import offload

WORKERS = 2
TRIP_ROUNDS, TRIPS = 9, 40
CPU_ROUNDS, CPU_TASKS, CPU_SECONDS = 3, 20, 0.100


@contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """Run a scheduler and ``workers`` single-threaded workers on 127.0.0.1; yield the address.

    The workers import the task functions (``harness.burn``) from this folder, so it is on
    their ``PYTHONPATH``, and on the scheduler's, which unpickles the task graph.
    """
    path = os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        scheduler_file = Path(folder, "scheduler.json")

        def start(module: str, *args: str) -> None:
            command = [sys.executable, "-m", f"distributed.cli.{module}", *args, "--no-dashboard"]
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )

        try:
            start(
                "dask_scheduler",
                *("--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(scheduler_file)),
            )
            deadline = time.monotonic() + 30
            while not scheduler_file.exists():
                if processes[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Dask scheduler did not start")
                time.sleep(0.05)
            address: str = json.loads(scheduler_file.read_text())["address"]
            for _ in range(workers):
                start("dask_worker", address, "--nthreads", "1", "--host", "127.0.0.1")
            with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(workers, timeout=30)
            yield address
        finally:
            for process in reversed(processes):  # workers first: a nanny stops its worker
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def one_task(executor: str) -> None:
    tasks = offload.BackgroundTasks(executor=executor)
    tasks.add_task(burn, 0)  # a new task each time: pickling is part of the trip
    await tasks()


async def round_trips(address: str) -> dict[str, Figure]:
    """A trivial task through a one-task list on each executor, and through raw Dask."""
    client = await anyio.to_thread.run_sync(partial(Client, address, set_as_default=False))
    try:

        def raw_dask() -> None:
            client.submit(burn, 0, pure=False).result()

        async def through_raw_dask() -> None:
            await anyio.to_thread.run_sync(raw_dask)

        for _ in range(WORKERS * 2):  # warm up: the workers import harness once
            await through_raw_dask()
            await one_task("dask")
        return await interleaved(
            {
                "raw client.submit().result()": partial(per_call, through_raw_dask, TRIPS),
                "offload dask": partial(per_call, partial(one_task, "dask"), TRIPS),
                "offload process": partial(per_call, partial(one_task, "process"), TRIPS),
            },
            TRIP_ROUNDS,
        )
    finally:
        await anyio.to_thread.run_sync(client.close)


async def cpu_batch(executor: str, iterations: int) -> float:
    """Seconds to run the CPU-bound batch on ``executor``, all tasks at once."""
    tasks = offload.BackgroundTasks(executor=executor, concurrency="group")
    for _ in range(CPU_TASKS):
        tasks.add_task(burn, iterations)
    start = time.perf_counter()
    await tasks()
    return time.perf_counter() - start


async def measure(address: str, iterations: int) -> list[Row]:
    """Measure every comparison of this module and return its table rows."""
    config = offload.OffloadConfig(process_workers=WORKERS, dask_address=address)
    async with offload.Runtime(config):
        trips = await round_trips(address)
        batches = await interleaved(
            {
                "offload dask": partial(cpu_batch, "dask", iterations),
                "offload process": partial(cpu_batch, "process", iterations),
            },
            CPU_ROUNDS,
        )
    dask, process = batches["offload dask"], batches["offload process"]
    return [
        Row(
            "round trip of 1 trivial task, dask vs process",
            trips["offload dask"],
            trips["offload process"],
            1e3,
            "ms",
            "",
            None,
        ),
        Row(
            "round trip of 1 trivial task, offload dask vs raw Dask",
            trips["offload dask"],
            trips["raw client.submit().result()"],
            1e3,
            "ms",
            "",
            None,
        ),
        Row(
            f"{CPU_TASKS} CPU tasks of ~{CPU_SECONDS * 1e3:.0f} ms on {WORKERS} workers "
            f"({CPU_TASKS / dask.median:.0f} vs {CPU_TASKS / process.median:.0f} tasks/s)",
            dask,
            process,
            1e3,
            "ms",
            "",
            None,
        ),
    ]


def main() -> str:
    load = load_average()
    iterations = calibrate(CPU_SECONDS)  # before the cluster's processes compete for the CPUs
    with local_cluster(WORKERS) as address:
        rows = anyio.run(measure, address, iterations)
    return print_table(
        f"Dask executor ({multiprocessing.cpu_count()} CPUs, a local cluster of {WORKERS} "
        f"single-threaded workers, load average {load} at the start)",
        rows,
        note=(
            "Anchor: offload's process executor with as many workers, in the same run; and "
            "raw `client.submit(pure=False).result()` in a thread, for offload's own cost. "
            "Scheduler, workers and client share this machine's CPUs: across machines, add "
            "the network's round trips to the Dask figures."
        ),
    )


if __name__ == "__main__":
    main()
