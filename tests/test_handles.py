"""Task handles: following a task by id after the response — status, progress, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import offload
import process_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    ConfigError,
    OffloadConfig,
    OffloadError,
    Progress,
    Runtime,
    TaskStatus,
)
from processes import pid_exists

pytestmark = pytest.mark.anyio


async def wait_for(predicate: Callable[[], object]) -> None:
    """Poll ``predicate`` until it is true, failing after 10 seconds."""
    with anyio.fail_after(10):
        # Polled: a status changes on the runtime's side, with no event to wait for.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def progress(task: BackgroundTask) -> Progress | None:
    found = offload.status(task.id)
    return None if found is None else found.progress


def state(task: BackgroundTask) -> str | None:
    found = offload.status(task.id)
    return None if found is None else found.state


async def double(x: int) -> int:
    return 2 * x


class Forever:
    """A task that runs until cancelled; ``started`` is set once it runs."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def __call__(self) -> None:
        self.started.set()
        await anyio.sleep_forever()


async def test_a_task_is_pending_then_running_then_ends_with_its_result() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def held() -> str:
        started.set()
        await release.wait()
        return "done"

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        first, second = tasks.add_task(held), tasks.add_task(double, 21)
        group.start_soon(tasks)
        await started.wait()
        running = offload.status(first.id)
        assert running is not None
        assert (running.state, running.attempts) == ("running", 1)
        assert running.name.endswith("held")
        assert running.started_at is not None
        assert running.ended_at is None
        assert state(second) == "pending"
        release.set()
        await wait_for(lambda: state(second) == "succeeded")
        ended = offload.status(first.id)
        assert ended is not None
        assert (ended.state, ended.result, ended.error) == ("succeeded", "done", None)
        assert ended.ended_at is not None
        assert ended.started_at is not None
        assert ended.ended_at >= ended.started_at >= ended.created_at - 1
        assert offload.status(second.id) == TaskStatus(
            id=second.id,
            name="double",
            executor="inline",
            state="succeeded",
            attempts=1,
            created_at=ended.created_at,
            started_at=offload.status(second.id).started_at,  # type: ignore[union-attr]
            ended_at=offload.status(second.id).ended_at,  # type: ignore[union-attr]
            result=42,
        )


async def test_a_failure_shows_its_type_and_message() -> None:
    def fail() -> None:
        raise ValueError("no such order")

    async with Runtime():
        tasks = BackgroundTasks(on_error="continue")
        task = tasks.add_task(fail)
        await tasks()
        failed = offload.status(task.id)
        assert failed is not None
        assert (failed.state, failed.error) == ("failed", "ValueError: no such order")


async def test_statuses_are_newest_first_and_bounded_by_keep_statuses() -> None:
    async with Runtime(OffloadConfig(keep_statuses=5)):
        made = []
        for n in range(20):
            tasks = BackgroundTasks()
            made.append(tasks.add_task(double, n))
            await tasks()
        kept = offload.statuses()
        assert [status.id for status in kept] == [task.id for task in reversed(made[-5:])]
        assert offload.status(made[0].id) is None  # forgotten, oldest first


async def test_the_oldest_tasks_of_a_list_are_forgotten_first() -> None:
    async with Runtime(OffloadConfig(keep_statuses=3)):
        first = BackgroundTasks()
        old = [first.add_task(double, n) for n in range(5)]
        await first()
        assert [status.id for status in offload.statuses()] == [task.id for task in old[2:]]
        assert offload.status(old[1].id) is None
        second = BackgroundTasks()
        new = [second.add_task(double, n) for n in range(2)]
        await second()
        kept = {status.id for status in offload.statuses()}
        assert kept == {old[4].id, new[0].id, new[1].id}
        assert offload.status(old[3].id) is None
        assert offload.status(old[4].id).result == 8  # type: ignore[union-attr]


async def test_keep_statuses_zero_keeps_only_live_tasks() -> None:
    async with Runtime(OffloadConfig(keep_statuses=0)):
        tasks = BackgroundTasks()
        task = tasks.add_task(double, 1)
        await tasks()
        assert offload.statuses() == []
        assert offload.status(task.id) is None


def test_keep_statuses_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="keep_statuses must be an int >= 0, got -1"):
        OffloadConfig(keep_statuses=-1)


def test_unknown_ids_are_none_and_false_never_errors() -> None:
    assert offload.status("0" * 32) is None
    assert offload.cancel("0" * 32) is False
    assert offload.status(42) is None  # type: ignore[arg-type]
    assert offload.cancel(None) is False  # type: ignore[arg-type]


# Progress


async def test_progress_from_an_inline_task_shows_while_it_runs() -> None:
    said, release = anyio.Event(), anyio.Event()

    async def counting() -> None:
        offload.set_progress(3, 10, "reading")
        said.set()
        await release.wait()

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        task = tasks.add_task(counting)
        group.start_soon(tasks)
        await said.wait()
        assert progress(task) == Progress(3, 10, "reading")
        release.set()


async def test_progress_from_a_thread_task_shows_while_it_runs() -> None:
    said, release = threading.Event(), threading.Event()

    def counting() -> None:
        offload.set_progress(1, 2)
        said.set()
        release.wait(10)

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        task = tasks.add_task(counting)
        group.start_soon(tasks)
        try:
            await anyio.to_thread.run_sync(said.wait, 10)
            assert progress(task) == Progress(1, 2)
        finally:
            release.set()


async def test_progress_from_a_worker_process_reaches_the_server_while_it_runs(
    tmp_path: Path,
) -> None:
    go_on = tmp_path / "go on"
    async with Runtime(OffloadConfig(process_workers=1)), anyio.create_task_group() as group:
        tasks = BackgroundTasks(executor="process")
        task = tasks.add_task(process_tasks.report_progress_then_wait, str(go_on))
        group.start_soon(tasks)
        try:
            await wait_for(lambda: progress(task) is not None)
            running = offload.status(task.id)
            assert running is not None
            assert running.state == "running"
            assert running.progress == Progress(5, 7, "halfway")
        finally:
            go_on.touch()
        await wait_for(lambda: state(task) == "succeeded")
        # The last progress travels apart from the result, on the log pipe: it lands too.
        await wait_for(lambda: progress(task) == Progress(7, 7, "done"))


def test_set_progress_outside_a_task_says_where_to_call_it() -> None:
    with pytest.raises(OffloadError, match=r"set_progress\(\) was called outside a background"):
        offload.set_progress(1)


@pytest.mark.parametrize(
    ("done", "total", "problem"),
    [(-1, None, "done must be a number >= 0, got -1"), (1, 0, "total must be a number > 0")],
)
def test_bad_progress_is_refused(done: float, total: float | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Progress(done, total)


# Cancel


async def test_a_pending_task_cancelled_never_starts_and_the_list_runs_on() -> None:
    started, release = anyio.Event(), anyio.Event()
    ran: list[str] = []

    async def first() -> None:
        started.set()
        await release.wait()
        ran.append("first")

    async def second() -> None:
        ran.append("second")

    async def third() -> None:
        ran.append("third")

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()  # on_error="raise": a cancel is no failure, nothing raises
        one, two, three = tasks.add_task(first), tasks.add_task(second), tasks.add_task(third)
        group.start_soon(tasks)
        await started.wait()
        assert offload.cancel(two.id) is True
        assert offload.cancel(two.id) is True  # still pending: asking again is harmless
        release.set()
        await wait_for(lambda: state(three) == "succeeded")
    assert ran == ["first", "third"]
    assert [report.status for report in tasks.reports] == ["succeeded", "cancelled", "succeeded"]
    assert tasks.reports[1].attempts == 0
    assert offload.cancel(one.id) is False  # it had ended


async def test_a_running_inline_task_is_cancelled_and_the_list_runs_on() -> None:
    forever = Forever()

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        hung, after = tasks.add_task(forever), tasks.add_task(double, 2)
        group.start_soon(tasks)
        await forever.started.wait()
        assert offload.cancel(hung.id) is True
        await wait_for(lambda: state(after) == "succeeded")
        assert state(hung) == "cancelled"
    assert [report.status for report in tasks.reports] == ["cancelled", "succeeded"]


async def test_a_task_of_a_group_is_cancelled_alone() -> None:
    forever = Forever()

    async def after_a_while() -> int:
        await anyio.sleep(0.2)
        return 7

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks(concurrency="group")
        hung, other = tasks.add_task(forever), tasks.add_task(after_a_while)
        group.start_soon(tasks)
        await forever.started.wait()
        assert offload.cancel(hung.id) is True
        await wait_for(lambda: state(other) == "succeeded")
    assert [report.status for report in tasks.reports] == ["cancelled", "succeeded"]


async def test_cancel_from_another_thread() -> None:
    forever = Forever()

    async with Runtime(), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        hung = tasks.add_task(forever)
        group.start_soon(tasks)
        await forever.started.wait()
        assert await anyio.to_thread.run_sync(offload.cancel, hung.id) is True
        await wait_for(lambda: state(hung) == "cancelled")


async def test_a_running_process_task_is_cancelled_by_killing_its_worker(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    async with Runtime(OffloadConfig(process_workers=1)), anyio.create_task_group() as group:
        tasks = BackgroundTasks(executor="process")
        spinning = tasks.add_task(process_tasks.spin_forever, str(pid_file))
        after = tasks.add_task(process_tasks.add, 1, 2)
        group.start_soon(tasks)
        await wait_for(pid_file.exists)
        worker = int(pid_file.read_text())
        assert offload.cancel(spinning.id) is True
        await wait_for(lambda: state(after) == "succeeded")
        assert not pid_exists(worker)  # killed, and replaced for the next task
    assert [report.status for report in tasks.reports] == ["cancelled", "succeeded"]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event a hung thread task waits for; set at teardown, so no thread is left behind."""
    event = threading.Event()
    yield event
    event.set()


async def test_a_running_thread_task_stops_being_waited_for_and_keeps_its_token(
    release: threading.Event,
) -> None:
    started = threading.Event()
    ran_after: list[float] = []

    def hung() -> None:
        started.set()
        release.wait(10)

    def after() -> None:
        ran_after.append(time.monotonic())

    async with Runtime(OffloadConfig(thread_limit=1)), anyio.create_task_group() as group:
        first = BackgroundTasks()
        stuck = first.add_task(hung)
        group.start_soon(first)
        await anyio.to_thread.run_sync(started.wait, 10)
        assert offload.cancel(stuck.id) is True
        await wait_for(lambda: state(stuck) == "cancelled")
        second = BackgroundTasks()
        second.add_task(after)
        group.start_soon(second)
        await anyio.sleep(0.2)
        assert ran_after == []  # the cancelled task's thread still holds the only token
        released_at = time.monotonic()
        release.set()
        await wait_for(lambda: bool(ran_after))
        assert ran_after[0] >= released_at


async def test_a_pending_detached_task_can_be_cancelled() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def first() -> None:
        started.set()
        await release.wait()

    async with Runtime():
        tasks = BackgroundTasks(detach=True)
        tasks.add_task(first)
        second = tasks.add_task(double, 1)
        await tasks()
        await started.wait()
        assert state(second) == "pending"
        assert offload.cancel(second.id) is True
        release.set()
        await wait_for(lambda: state(second) == "cancelled")
