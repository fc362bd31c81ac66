"""offload.metrics with the real prometheus_client: the counts are exactly what ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry

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
