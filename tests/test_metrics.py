"""offload.metrics with the real prometheus_client: the counts are exactly what ran."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

import offload
import offload.metrics
import process_tasks
from offload import BackgroundTasks, OffloadConfig, Runtime

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    hooks = offload.metrics.install(registry)
    yield registry
    offload.remove_hooks(hooks)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def noop() -> None:
    pass


def fail() -> None:
    raise ValueError("no")


async def test_tasks_are_counted_by_executor_and_status(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    async with Runtime(OffloadConfig(process_workers=1)):
        await BackgroundTasks([noop, noop, noop])()
        await BackgroundTasks([fail], on_error="continue")()
        # A warm worker first: the timeout must find the task running, not the pool starting.
        slow = BackgroundTasks([process_tasks.pid], executor="process", on_error="continue")
        slow.add_task(process_tasks.spin_forever, str(tmp_path / "pid")).set(
            executor="process", timeout=0.5
        )
        with anyio.fail_after(30):
            await slow()
        assert value(registry, "offload_detached_pending") == 0
    counted = {
        ("inline", "succeeded"): 3,
        ("process", "succeeded"): 1,
        ("thread", "failed"): 1,
        ("process", "timed_out"): 1,
    }
    for (executor, status), count in counted.items():
        assert value(registry, "offload_tasks_total", executor=executor, status=status) == count
    assert value(registry, "offload_task_duration_seconds_count", executor="inline") == 3
    assert value(registry, "offload_task_wait_seconds_count", executor="inline") == 3
    assert value(registry, "offload_task_wait_seconds_count", executor="process") == 2
    for executor in ("inline", "thread", "process"):
        assert value(registry, "offload_tasks_in_flight", executor=executor) == 0
    assert value(registry, "offload_worker_restarts_total", reason="timeout") == 1
    assert value(registry, "offload_task_duration_seconds_sum", executor="process") >= 0.5


async def test_in_flight_and_pending_while_a_detached_list_runs(
    registry: CollectorRegistry,
) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def held() -> None:
        started.set()
        await release.wait()

    async with Runtime():
        tasks = BackgroundTasks(detach=True)
        tasks.add_task(held)
        await tasks()
        await started.wait()
        assert value(registry, "offload_tasks_in_flight", executor="inline") == 1
        assert value(registry, "offload_detached_pending") == 1
        release.set()
    assert value(registry, "offload_tasks_in_flight", executor="inline") == 0
    assert value(registry, "offload_tasks_total", executor="inline", status="succeeded") == 1


async def test_skipped_tasks_count_without_a_duration(registry: CollectorRegistry) -> None:
    async with Runtime():
        await BackgroundTasks([fail, noop], on_error="stop")()
    assert value(registry, "offload_tasks_total", executor="inline", status="skipped") == 1
    assert value(registry, "offload_task_duration_seconds_count", executor="inline") == 0


def test_installing_twice_into_one_registry_returns_the_same_hooks(
    registry: CollectorRegistry,
) -> None:
    assert offload.metrics.install(registry) is offload.metrics.install(registry)


WORKER = """
import os, sys
import anyio
import offload, offload.metrics
from offload import BackgroundTasks, OffloadConfig, Runtime

async def noop():
    pass

def fail():
    raise ValueError("no")

async def wait_for_go():
    while not os.path.exists(sys.argv[1]):
        await anyio.sleep(0.01)

async def main():
    offload.metrics.install()
    async with Runtime(OffloadConfig(on_error="continue")):
        await BackgroundTasks([noop, noop, fail])()
        tasks = BackgroundTasks([wait_for_go], detach=True)
        await tasks()
        while not any(status.state == "running" for status in offload.statuses()):
            await anyio.sleep(0.01)
        print("pending", flush=True)
        with anyio.fail_after(30):
            while not tasks.reports:
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # the gauge is written just after the list lets go
        print("ended", flush=True)
        sys.stdin.read()  # alive until the test has scraped

anyio.run(main)
"""


def test_server_workers_sharing_a_multiprocess_directory_add_up(tmp_path: Path) -> None:
    # prometheus_client's multiprocess mode, as under `uvicorn --workers 2` or gunicorn.
    metrics, go = tmp_path / "metrics", tmp_path / "go"
    metrics.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go)],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]

    def scrape(said: str) -> CollectorRegistry:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == f"{said}\n"
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(metrics))  # type: ignore[no-untyped-call]
        return registry

    try:
        registry = scrape("pending")
        assert value(registry, "offload_detached_pending") == 2  # one list in each worker
        assert value(registry, "offload_tasks_in_flight", executor="inline") == 2
        go.touch()
        registry = scrape("ended")
        assert value(registry, "offload_tasks_total", executor="inline", status="succeeded") == 6
        assert value(registry, "offload_tasks_total", executor="thread", status="failed") == 2
        assert value(registry, "offload_task_duration_seconds_count", executor="inline") == 6
        assert value(registry, "offload_tasks_in_flight", executor="inline") == 0
        assert value(registry, "offload_detached_pending") == 0
    finally:
        go.touch()
        for worker in workers:
            try:
                worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.communicate()
