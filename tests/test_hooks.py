"""Hooks: callbacks on every task's way, on one runtime or every runtime of the process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import offload
import process_tasks
from offload import BackgroundTasks, Call, OffloadConfig, Runtime, TaskHooks, TaskReport

pytestmark = pytest.mark.anyio


class Recorder(TaskHooks):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def scheduled(self, task: Call, executor: str) -> None:
        self.events.append(("scheduled", task.name, executor))

    def started(self, task: Call, executor: str, attempt: int) -> None:
        self.events.append(("started", task.name, executor, attempt))

    def ended(self, report: TaskReport) -> None:
        self.events.append(("ended", report.name, report.status, report.attempts))

    def worker_restarted(self, executor: str, reason: str) -> None:
        self.events.append(("restarted", executor, reason))


@pytest.fixture
def everywhere() -> Iterator[Recorder]:
    """Hooks added for every runtime of the process, removed after the test."""
    recorder = Recorder()
    offload.add_hooks(recorder)
    yield recorder
    offload.remove_hooks(recorder)


attempts_made = 0


def flaky() -> None:
    global attempts_made
    attempts_made += 1
    if attempts_made == 1:
        raise ValueError("first attempt fails")


async def noop() -> None:
    pass


async def test_a_runtimes_hooks_see_each_task_scheduled_started_and_ended() -> None:
    global attempts_made
    attempts_made = 0
    recorder = Recorder()
    async with Runtime(OffloadConfig(retry_backoff=0)) as runtime:
        runtime.add_hooks(recorder)
        tasks = BackgroundTasks(on_error="continue")
        tasks.add_task(flaky).set(retries=1)
        tasks.add_task(noop)
        await tasks()
    assert recorder.events == [
        ("scheduled", "flaky", "thread"),
        ("scheduled", "noop", "inline"),
        ("started", "flaky", "thread", 1),
        ("started", "flaky", "thread", 2),
        ("ended", "flaky", "succeeded", 2),
        ("started", "noop", "inline", 1),
        ("ended", "noop", "succeeded", 1),
    ]


async def test_tasks_that_never_start_end_as_skipped_or_cancelled() -> None:
    def fail() -> None:
        raise ValueError("stop here")

    recorder = Recorder()
    async with Runtime() as runtime:
        runtime.add_hooks(recorder)
        tasks = BackgroundTasks(on_error="stop")
        tasks.add_task(fail).set(name="fail")
        tasks.add_task(noop)
        await tasks()
    ended = [event for event in recorder.events if event[0] == "ended"]
    assert ended == [("ended", "fail", "failed", 1), ("ended", "noop", "skipped", 0)]


async def test_process_wide_hooks_see_every_runtime(everywhere: Recorder) -> None:
    for _ in range(2):
        async with Runtime():
            await BackgroundTasks([noop])()
    assert [event[0] for event in everywhere.events] == 2 * ["scheduled", "started", "ended"]
    offload.remove_hooks(everywhere)
    async with Runtime():
        await BackgroundTasks([noop])()
    assert len(everywhere.events) == 6  # removed: called no more


async def test_a_hook_that_raises_is_logged_and_the_tasks_run_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(TaskHooks):
        def started(self, task: Call, executor: str, attempt: int) -> None:
            raise RuntimeError("hook down")

    async with Runtime() as runtime:
        runtime.add_hooks(Broken())
        tasks = BackgroundTasks([noop])
        await tasks()
    assert tasks.reports[0].status == "succeeded"
    assert "raised in started()" in caplog.text
    assert caplog.records[0].levelno == logging.ERROR


async def test_on_report_is_one_of_the_hooks() -> None:
    reports: list[TaskReport] = []
    recorder = Recorder()
    async with Runtime(OffloadConfig(on_report=reports.append)) as runtime:
        runtime.add_hooks(recorder)
        runtime.remove_hooks(recorder)
        runtime.remove_hooks(recorder)  # removing again is harmless
        assert runtime.hooks[-1].on_report == reports.append  # type: ignore[attr-defined]
        await BackgroundTasks([noop])()
    assert [report.status for report in reports] == ["succeeded"]
    assert recorder.events == []


def test_hooks_must_be_task_hooks() -> None:
    with pytest.raises(TypeError, match="hooks must be an offload.TaskHooks, got a function"):
        offload.add_hooks(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got a list"):
        Runtime().add_hooks([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "changes", "task", "time_limit"),
    [
        ("crash", {}, "crash", None),
        ("timeout", {}, "spin", 0.5),
        ("recycle", {"max_tasks_per_child": 1}, "add", None),
    ],
)
async def test_a_replaced_worker_process_is_told_with_its_reason(
    everywhere: Recorder,
    tmp_path: Path,
    reason: str,
    changes: dict[str, int],
    task: str,
    time_limit: float | None,
) -> None:
    calls: tuple[Any, ...] = {
        "crash": (process_tasks.crash, "exit"),
        "spin": (process_tasks.spin_forever, str(tmp_path / "pid")),
        "add": (process_tasks.add, 1, 2),
    }[task]
    config = OffloadConfig(process_workers=1, executor="process", **changes)  # type: ignore[arg-type]
    async with Runtime(config):
        await BackgroundTasks([process_tasks.pid], on_error="continue")()  # a warm worker
        tasks = BackgroundTasks(on_error="continue")
        tasks.add_task(*calls).set(timeout=time_limit)
        with anyio.fail_after(30):
            await tasks()
    assert ("restarted", "process", reason) in everywhere.events


async def test_hooks_hear_of_an_end_in_the_reverse_order_of_the_start() -> None:
    heard: list[str] = []

    class Named(TaskHooks):
        def __init__(self, name: str) -> None:
            self.name = name

        def started(self, task: Call, executor: str, attempt: int) -> None:
            heard.append(f"{self.name} started")

        def ended(self, report: TaskReport) -> None:
            heard.append(f"{self.name} ended")

    async with Runtime() as runtime:
        runtime.add_hooks(Named("first"))
        runtime.add_hooks(Named("second"))
        await BackgroundTasks([noop])()
    assert heard == ["first started", "second started", "second ended", "first ended"]
