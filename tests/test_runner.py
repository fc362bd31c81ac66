"""The runner: order, the error policies in both concurrency modes, timeouts, retries, reports."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

from offload import (
    BackgroundTask,
    BackgroundTasks,
    OffloadConfig,
    Runtime,
    TaskReport,
    TaskTimeout,
    task_options,
)

pytestmark = pytest.mark.anyio

POLICIES = ["raise", "stop", "continue", "collect"]
MODES = ["sequential", "group"]


class Boom(Exception):
    pass


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that blocked threads wait on; set at teardown so no thread outlives its test."""
    event = threading.Event()
    yield event
    event.set()


def quick(ran: list[str], name: str) -> Callable[[], None]:
    def task() -> None:
        ran.append(name)

    task.__qualname__ = name
    return task


def failing(ran: list[str], name: str) -> Callable[[], None]:
    def task() -> None:
        ran.append(name)
        raise Boom(name)

    task.__qualname__ = name
    return task


def slow(ran: list[str], name: str) -> Callable[[], object]:
    async def task() -> None:
        await anyio.sleep(30)
        ran.append(name)

    task.__qualname__ = name
    return task


def statuses(tasks: BackgroundTasks) -> list[str]:
    return [report.status for report in tasks.reports]


async def test_sequential_tasks_run_in_order_each_after_the_previous_ended() -> None:
    events: list[str] = []

    async def on_loop(name: str) -> None:
        events.append(f"start {name}")
        await anyio.sleep(0.02)
        events.append(f"end {name}")

    def in_thread(name: str) -> None:
        events.append(f"start {name}")
        time.sleep(0.02)
        events.append(f"end {name}")

    tasks = BackgroundTasks()
    tasks.add_task(in_thread, "1")
    tasks.add_task(on_loop, "2")
    tasks.add_task(in_thread, "3").set(executor="inline")
    tasks.add_task(on_loop, "4").set(executor="thread")
    await tasks()
    assert events == [f"{edge} {n}" for n in "1234" for edge in ("start", "end")]
    assert [r.executor for r in tasks.reports] == ["thread", "inline", "inline", "thread"]


async def test_group_starts_all_tasks_at_once() -> None:
    started = 0
    all_started = anyio.Event()

    async def wait_for_the_others() -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        with anyio.fail_after(5):  # sequential running would wait here forever
            await all_started.wait()

    tasks = BackgroundTasks(concurrency="group")
    for _ in range(3):
        tasks.add_task(wait_for_the_others)
    await tasks()
    assert statuses(tasks) == ["succeeded"] * 3


async def test_group_reports_stay_in_declaration_order() -> None:
    async def sleep_then_name(delay: float) -> None:
        await anyio.sleep(delay)

    tasks = BackgroundTasks(concurrency="group")
    for delay, name in [(0.06, "slowest"), (0.0, "fastest"), (0.03, "middle")]:
        tasks.add_task(sleep_then_name, delay).set(name=name)
    await tasks()
    assert [r.name for r in tasks.reports] == ["slowest", "fastest", "middle"]
    assert tasks.reports[0].duration > tasks.reports[1].duration


@pytest.mark.parametrize("policy", POLICIES)
async def test_sequential_policy(policy: str, ran: list[str]) -> None:
    tasks = BackgroundTasks(
        [quick(ran, "a"), failing(ran, "b"), quick(ran, "c"), failing(ran, "d")],
        on_error=policy,  # type: ignore[arg-type]
    )
    if policy == "raise":
        with pytest.raises(Boom, match="^b$"):
            await tasks()
    elif policy == "collect":
        with pytest.raises(ExceptionGroup) as caught:
            await tasks()
        assert [str(e) for e in caught.value.exceptions] == ["b", "d"]
        assert str(caught.value).startswith("2 of 4 background tasks failed")
    else:
        await tasks()

    if policy in ("raise", "stop"):
        assert ran == ["a", "b"]
        assert statuses(tasks) == ["succeeded", "failed", "skipped", "skipped"]
    else:
        assert ran == ["a", "b", "c", "d"]
        assert statuses(tasks) == ["succeeded", "failed", "succeeded", "failed"]


@pytest.mark.parametrize("policy", ["raise", "stop"])
async def test_group_policy_that_stops_cancels_the_rest(policy: str, ran: list[str]) -> None:
    tasks = BackgroundTasks(
        [slow(ran, "a"), failing(ran, "b"), slow(ran, "c")],
        on_error=policy,  # type: ignore[arg-type]
        concurrency="group",
    )
    with anyio.fail_after(5):  # the slow tasks would take 30 s if not cancelled
        if policy == "raise":
            with pytest.raises(Boom, match="^b$"):
                await tasks()
        else:
            await tasks()
    assert ran == ["b"]
    assert statuses(tasks) == ["skipped", "failed", "skipped"]


@pytest.mark.parametrize("policy", ["continue", "collect"])
async def test_group_policy_that_goes_on_runs_every_task(policy: str, ran: list[str]) -> None:
    tasks = BackgroundTasks(
        [quick(ran, "a"), failing(ran, "b"), quick(ran, "c"), failing(ran, "d")],
        on_error=policy,  # type: ignore[arg-type]
        concurrency="group",
    )
    if policy == "collect":
        with pytest.raises(ExceptionGroup) as caught:
            await tasks()
        assert [str(e) for e in caught.value.exceptions] == ["b", "d"]  # declaration order
    else:
        await tasks()
    assert sorted(ran) == ["a", "b", "c", "d"]
    assert statuses(tasks) == ["succeeded", "failed", "succeeded", "failed"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_policy_comes_from_the_config_when_the_list_sets_none(
    mode: str, ran: list[str]
) -> None:
    config = OffloadConfig(on_error="continue", concurrency=mode)  # type: ignore[arg-type]
    async with Runtime(config):
        tasks = BackgroundTasks([failing(ran, "a"), quick(ran, "b")])
        await tasks()
    assert statuses(tasks) == ["failed", "succeeded"]


async def test_raise_propagates_the_task_exception_itself() -> None:
    error = Boom("the very one")

    def fail() -> None:
        raise error

    tasks = BackgroundTasks([fail])
    with pytest.raises(Boom) as caught:
        await tasks()
    assert caught.value is error
    assert tasks.reports[0].error is error


async def test_every_failure_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture, ran: list[str]
) -> None:
    tasks = BackgroundTasks([failing(ran, "a"), failing(ran, "b")], on_error="continue")
    with caplog.at_level(logging.ERROR, logger="offload"):
        await tasks()
    failures = [r for r in caplog.records if r.name == "offload"]
    assert [r.getMessage() for r in failures] == [
        "Background task 'a' failed on the thread executor",
        "Background task 'b' failed on the thread executor",
    ]
    assert all(r.exc_info and isinstance(r.exc_info[1], Boom) for r in failures)
    assert "raise Boom(name)" in caplog.text  # the traceback reaches the log


async def test_on_report_receives_every_report_including_skipped(ran: list[str]) -> None:
    seen: list[TaskReport] = []
    async with Runtime(OffloadConfig(on_report=seen.append, on_error="stop")):
        tasks = BackgroundTasks([quick(ran, "a"), failing(ran, "b"), quick(ran, "c")])
        await tasks()
    assert [(r.name, r.status) for r in seen] == [
        ("a", "succeeded"),
        ("b", "failed"),
        ("c", "skipped"),
    ]


async def test_a_broken_on_report_hook_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture, ran: list[str]
) -> None:
    def broken_hook(report: TaskReport) -> None:
        raise RuntimeError("hook bug")

    async with Runtime(OffloadConfig(on_report=broken_hook)):
        tasks = BackgroundTasks([quick(ran, "a"), quick(ran, "b")])
        await tasks()
    assert statuses(tasks) == ["succeeded", "succeeded"]
    assert "on_report hook" in caplog.text
    assert "hook bug" in caplog.text


async def test_reports_record_timing_and_attempts(ran: list[str]) -> None:
    before = time.time()
    tasks = BackgroundTasks([quick(ran, "a"), failing(ran, "b"), quick(ran, "c")])
    with pytest.raises(Boom):
        await tasks()
    done, failed, skipped = tasks.reports
    assert done.started_at is not None
    assert before <= done.started_at <= time.time()
    assert done.duration >= 0
    assert (done.attempts, failed.attempts, skipped.attempts) == (1, 1, 0)
    assert (skipped.started_at, skipped.duration, skipped.error) == (None, 0.0, None)
    assert isinstance(failed.error, Boom)
    assert failed.ok is False
    assert done.ok is True


async def test_inline_timeout_cancels_the_coroutine() -> None:
    cancelled = False

    async def forever() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep(30)
        finally:
            cancelled = True

    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(forever).set(timeout=0.05)
    with anyio.fail_after(5):
        await tasks()
    (report,) = tasks.reports
    assert report.status == "timed_out"
    assert isinstance(report.error, TaskTimeout)
    assert isinstance(report.error, TimeoutError)
    assert cancelled


async def test_thread_timeout_stops_the_waiting(release: threading.Event) -> None:
    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(release.wait, 30).set(timeout=0.05)
    with anyio.fail_after(5):  # the thread itself runs on until `release` is set
        await tasks()
    assert tasks.reports[0].status == "timed_out"
    assert "timed out after 0.05s on the thread executor" in str(tasks.reports[0].error)


async def test_timeout_under_raise_propagates_task_timeout() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(anyio.sleep, 30).set(timeout=0.05)
    with anyio.fail_after(5), pytest.raises(TaskTimeout, match="'sleep' timed out after 0.05s"):
        await tasks()


async def test_timeout_comes_from_task_then_function_then_config() -> None:
    @task_options(timeout=0.05)
    async def limited_by_function() -> None:
        await anyio.sleep(30)

    async def limited_by_config() -> None:
        await anyio.sleep(30)

    async with Runtime(OffloadConfig(task_timeout=0.1, on_error="continue")):
        tasks = BackgroundTasks()
        tasks.add_task(limited_by_function)
        tasks.add_task(limited_by_config)
        tasks.add_task(limited_by_function).set(timeout=0.02)
        with anyio.fail_after(5):
            await tasks()
    assert statuses(tasks) == ["timed_out"] * 3
    assert [str(r.error).split("after ")[1].split(" ")[0] for r in tasks.reports] == [
        "0.05s",
        "0.1s",
        "0.02s",
    ]


async def test_a_failed_task_is_retried_until_it_succeeds() -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom(f"attempt {calls}")

    async with Runtime(OffloadConfig(retry_backoff=0)):
        tasks = BackgroundTasks()
        tasks.add_task(flaky).set(retries=2)
        await tasks()
    assert tasks.reports[0].status == "succeeded"
    assert tasks.reports[0].attempts == 3


async def test_a_task_out_of_retries_fails_with_its_last_error(ran: list[str]) -> None:
    async with Runtime(OffloadConfig(retries=1, retry_backoff=0.01)):
        tasks = BackgroundTasks([failing(ran, "a")])
        with pytest.raises(Boom):
            await tasks()
    assert ran == ["a", "a"]
    assert tasks.reports[0].attempts == 2


async def test_awaiting_a_single_task_runs_it_with_the_config_policy(ran: list[str]) -> None:
    await BackgroundTask(quick(ran, "a"))()
    with pytest.raises(Boom):
        await BackgroundTask(failing(ran, "b"))()
    async with Runtime(OffloadConfig(on_error="continue")):
        await BackgroundTask(failing(ran, "c"))()
    assert ran == ["a", "b", "c"]


async def test_a_run_empty_of_tasks_does_nothing() -> None:
    tasks = BackgroundTasks()
    await tasks()
    assert tasks.reports == []


async def test_a_sync_callable_returning_a_coroutine_fails_with_the_fix() -> None:
    async def notify(user: str) -> None:
        pass

    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(lambda: notify("ada")).set(name="notify ada")
    await tasks()
    error = tasks.reports[0].error
    assert isinstance(error, TypeError)
    assert "'notify ada' returned a coroutine instead of running it" in str(error)
    assert "add_task(notify, x) instead of add_task(lambda: notify(x))" in str(error)


async def test_group_starts_tasks_in_declaration_order() -> None:
    started: list[int] = []

    async def mark(index: int) -> None:
        started.append(index)

    for _ in range(10):  # trio shuffles the tasks it schedules together; order must not
        started.clear()
        tasks = BackgroundTasks(concurrency="group")
        for index in range(6):
            tasks.add_task(mark, index)
        await tasks()
        assert started == list(range(6))
