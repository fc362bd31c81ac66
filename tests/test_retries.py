"""Retries: where the count comes from, backoff with jitter, what is retried, what is not."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import fault_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    NotPicklable,
    OffloadConfig,
    Runtime,
    TaskTimeout,
    WorkerCrashed,
    task_options,
)
from offload._report import TaskReport

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    pass


def failing(calls: list[int]) -> Callable[[], None]:
    """A task that always fails, counting its calls."""

    def always_fails() -> None:
        calls.append(len(calls) + 1)
        raise Flaky(f"attempt {len(calls)}")

    return always_fails


@task_options(retries=2)
def fails_with_function_retries(calls: list[int]) -> None:
    calls.append(len(calls) + 1)
    raise Flaky(f"attempt {len(calls)}")


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The delays the runner logged before each retry."""
    return [
        float(r.args[-1])  # type: ignore[arg-type,index]
        for r in caplog.records
        if r.name == "offload" and "retrying in" in r.msg
    ]


async def test_retries_come_from_the_task_then_the_function_then_the_config() -> None:
    by_config: list[int] = []
    by_function: list[int] = []
    by_task: list[int] = []
    async with Runtime(OffloadConfig(retries=3, retry_backoff=0, on_error="continue")):
        tasks = BackgroundTasks()
        tasks.add_task(failing(by_config))
        tasks.add_task(fails_with_function_retries, by_function)
        tasks.add_task(fails_with_function_retries, by_task).set(retries=0)
        await tasks()
    assert [r.attempts for r in tasks.reports] == [4, 3, 1]
    assert (by_config, by_function, by_task) == ([1, 2, 3, 4], [1, 2, 3], [1])
    assert [r.status for r in tasks.reports] == ["failed"] * 3
    assert [str(r.error) for r in tasks.reports] == ["attempt 4", "attempt 3", "attempt 1"]


async def test_each_retry_is_logged_and_the_backoff_doubles(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("offload._runner.random.uniform", lambda low, high: 1.0)  # no jitter
    calls: list[int] = []
    async with Runtime(OffloadConfig(retries=3, retry_backoff=0.01, on_error="continue")):
        tasks = BackgroundTasks([failing(calls)])
        await tasks()
    assert retry_delays(caplog) == [0.01, 0.02, 0.04]
    warnings = [r for r in caplog.records if "retrying in" in r.msg]
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert warnings[0].getMessage() == (
        "Background task 'failing.<locals>.always_fails' failed on attempt 1 of 4 "
        "(Flaky('attempt 1')); retrying in 0.01s"
    )


async def test_the_backoff_has_jitter_within_half_and_one_and_a_half_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Runtime(OffloadConfig(retries=6, retry_backoff=0.001, on_error="continue")):
        tasks = BackgroundTasks([failing([])])
        await tasks()
    delays = retry_delays(caplog)
    bases = [0.001 * 2**n for n in range(6)]
    assert all(0.5 * base <= delay <= 1.5 * base for delay, base in zip(delays, bases, strict=True))
    assert len({round(d / b, 6) for d, b in zip(delays, bases, strict=True)}) > 1  # not constant


async def test_a_timed_out_attempt_is_retried_with_a_fresh_timeout() -> None:
    attempts = 0

    async def slow_then_quick() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await anyio.sleep(30)

    async with Runtime(OffloadConfig(retry_backoff=0)):
        tasks = BackgroundTasks()
        tasks.add_task(slow_then_quick).set(timeout=0.05, retries=1)
        with anyio.fail_after(10):
            await tasks()
    (report,) = tasks.reports
    assert (report.status, report.attempts, report.error) == ("succeeded", 2, None)


async def test_a_task_that_always_times_out_reports_timed_out_after_its_retries() -> None:
    async with Runtime(OffloadConfig(retry_backoff=0, on_error="continue")):
        tasks = BackgroundTasks()
        tasks.add_task(anyio.sleep, 30).set(timeout=0.02, retries=2)
        with anyio.fail_after(10):
            await tasks()
    (report,) = tasks.reports
    assert (report.status, report.attempts) == ("timed_out", 3)
    assert isinstance(report.error, TaskTimeout)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # real processes: one backend is enough
async def test_a_crashed_worker_is_retried_on_a_new_one(tmp_path: Path) -> None:
    async with Runtime(OffloadConfig(process_workers=1, retry_backoff=0)):
        tasks = BackgroundTasks(executor="process")
        tasks.add_task(fault_tasks.crash_once, str(tmp_path / "crashed")).set(retries=1)
        await tasks()
    (report,) = tasks.reports
    assert (report.status, report.attempts) == ("succeeded", 2)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_worker_that_crashes_every_time_fails_with_worker_crashed() -> None:
    async with Runtime(OffloadConfig(process_workers=1, retry_backoff=0, on_error="continue")):
        tasks = BackgroundTasks(executor="process")
        tasks.add_task(fault_tasks.crash, "exit").set(retries=2)
        await tasks()
    (report,) = tasks.reports
    assert (report.status, report.attempts) == ("failed", 3)
    assert isinstance(report.error, WorkerCrashed)
    assert report.error.exitcode == 70


async def test_the_backoff_sleep_is_cancelled_by_a_failing_sibling() -> None:
    async def fail_soon() -> None:
        await anyio.sleep(0.1)
        raise Flaky("sibling")

    async with Runtime(OffloadConfig(retry_backoff=30)):  # 30 s: only a cancel ends it early
        tasks = BackgroundTasks(on_error="stop", concurrency="group")
        tasks.add_task(failing([])).set(retries=5, name="backing off")
        tasks.add_task(fail_soon)
        with anyio.fail_after(10):
            await tasks()
    backing_off, sibling = tasks.reports
    assert (backing_off.status, backing_off.attempts, backing_off.error) == ("skipped", 1, None)
    assert (sibling.status, str(sibling.error)) == ("failed", "sibling")


async def test_the_backoff_sleep_is_cancelled_by_a_drain(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(10):
        async with Runtime(OffloadConfig(retry_backoff=30, shutdown_timeout=0.1)):
            tasks = BackgroundTasks(detach=True)
            tasks.add_task(failing([])).set(retries=5, name="backing off")
            await tasks()
    assert "Runtime closed with 1 background task(s) unfinished after 0.1s: backing off" in (
        caplog.text
    )


@pytest.mark.parametrize("policy", ["raise", "stop", "continue", "collect"])
async def test_the_final_failure_follows_the_error_policy(policy: str) -> None:
    calls: list[int] = []
    after: list[str] = []
    async with Runtime(OffloadConfig(retries=2, retry_backoff=0)):
        tasks = BackgroundTasks(on_error=policy)  # type: ignore[arg-type]
        tasks.add_task(failing(calls))
        tasks.add_task(after.append, "after")
        if policy == "raise":
            with pytest.raises(Flaky, match="^attempt 3$"):
                await tasks()
        elif policy == "collect":
            with pytest.raises(ExceptionGroup) as caught:
                await tasks()
            assert [str(e) for e in caught.value.exceptions] == ["attempt 3"]
        else:
            await tasks()
    assert calls == [1, 2, 3]
    first, second = tasks.reports
    assert (first.status, first.attempts) == ("failed", 3)
    assert second.status == ("skipped" if policy in ("raise", "stop") else "succeeded")


async def test_an_unpicklable_process_task_is_not_retried() -> None:
    seen: list[TaskReport] = []
    config = OffloadConfig(executor="process", retries=3, on_report=seen.append)
    async with Runtime(config.replace(on_error="continue", process_workers=1)):
        task = BackgroundTask(lambda: None)  # bound to "process" by the config only when run
        await task()
    (report,) = seen
    assert isinstance(report.error, NotPicklable)
    assert report.attempts == 1


async def test_a_report_spans_every_attempt() -> None:
    async def slow_failure() -> None:
        await anyio.sleep(0.05)
        raise Flaky("slow")

    async with Runtime(OffloadConfig(retries=2, retry_backoff=0, on_error="continue")):
        tasks = BackgroundTasks([slow_failure])
        await tasks()
    (report,) = tasks.reports
    assert report.attempts == 3
    assert report.duration >= 0.1  # three attempts of 0.05 s; generous, never tight
