"""Graceful drain: a closing Runtime takes no new work, waits, then names what it abandons."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import anyio
import pytest

from offload import BackgroundTasks, OffloadConfig, OffloadError, Runtime
from offload._default import current_runtime

pytestmark = pytest.mark.anyio


def abandoned_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "offload" and r.getMessage().startswith("Runtime closed with")
    ]


def marks(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir()]


def mark(directory: Path, name: str) -> None:
    (directory / name).touch(exist_ok=False)  # a task that ran twice would fail here


async def test_a_drain_that_fits_in_the_timeout_loses_no_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_loop(name: str) -> None:
        await anyio.sleep(0.1)
        mark(tmp_path, name)

    def in_thread(name: str) -> None:
        threading.Event().wait(0.1)
        mark(tmp_path, name)

    expected = set()
    async with Runtime(OffloadConfig(shutdown_timeout=30)):
        for n in range(20):
            tasks = BackgroundTasks(detach=True, concurrency="group" if n % 2 else "sequential")
            tasks.add_task(on_loop, f"loop-{n}")
            tasks.add_task(in_thread, f"thread-{n}")
            expected |= {f"loop-{n}", f"thread-{n}"}
            await tasks()
        # Leaving the runtime now: every list is still pending or running.
    assert set(marks(tmp_path)) == expected
    assert abandoned_log(caplog) == []


async def test_a_drain_that_does_not_fit_names_exactly_the_tasks_it_abandons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[str] = []

    async def endless(name: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(name)

    done = BackgroundTasks(detach=False)
    done.add_task(anyio.sleep, 0).set(name="quick")
    stuck = BackgroundTasks(detach=False)
    stuck.add_task(endless, "stuck-1").set(name="stuck-1")
    stuck.add_task(anyio.sleep, 0).set(name="after-stuck-1")  # sequential: never starts
    group = BackgroundTasks(detach=False, concurrency="group")
    group.add_task(endless, "stuck-2").set(name="stuck-2")
    group.add_task(anyio.sleep, 0).set(name="quick-in-group")
    unsent = BackgroundTasks(detach=False)
    unsent.add_task(anyio.sleep, 0).set(name="unsent")
    with anyio.fail_after(10):  # the drain gives up after 0.3 s
        async with Runtime(OffloadConfig(shutdown_timeout=0.3)):
            for tasks in (done, stuck, group, unsent):
                tasks.detach = True
            for tasks in (done, stuck, group):  # the response of `unsent` is never sent
                await tasks()
    (message,) = abandoned_log(caplog)
    count, seconds, names = re.fullmatch(
        r"Runtime closed with (\d+) background task\(s\) unfinished after (.+)s: (.*)", message
    ).groups()  # type: ignore[union-attr]
    assert (int(count), seconds) == (4, "0.3")
    assert names.split(", ") == ["stuck-1", "after-stuck-1", "stuck-2", "unsent"]
    assert "Detached background tasks" not in caplog.text  # a cancellation is no failure
    assert sorted(cancelled) == ["stuck-1", "stuck-2"]  # cancelled, not left running
    assert [r.status for r in done.reports] == ["succeeded"]
    assert [r.status for r in stuck.reports] == ["skipped", "skipped"]
    assert [r.status for r in group.reports] == ["skipped", "succeeded"]


async def test_scheduling_after_shutdown_began_is_refused_with_a_clear_error() -> None:
    release = anyio.Event()
    refused: list[str] = []

    async def blocked() -> None:
        await release.wait()

    async def schedule_while_draining(runtime: Runtime) -> None:
        await anyio.sleep(0.05)
        assert current_runtime() is runtime  # still the active runtime while it drains
        try:
            BackgroundTasks(detach=True)
        except OffloadError as exc:
            refused.append(str(exc))
        try:
            BackgroundTasks([blocked]).detach = True
        except OffloadError as exc:
            refused.append(str(exc))
        in_place = BackgroundTasks([blocked], detach=False)  # in-place lists still run
        release.set()
        await in_place()

    async with anyio.create_task_group() as group, Runtime() as runtime:
        await BackgroundTasks([blocked], detach=True)()
        group.start_soon(schedule_while_draining, runtime)
    assert (
        refused
        == [
            "the offload Runtime is shutting down, so it takes no new detached tasks; schedule "
            "them before shutdown begins, or answer 503 Service Unavailable"
        ]
        * 2
    )


async def test_a_list_scheduled_before_shutdown_is_still_taken_while_draining(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def send_late(tasks: BackgroundTasks) -> None:
        await anyio.sleep(0.1)  # the response goes out while the runtime drains
        await tasks()

    async with anyio.create_task_group() as group, Runtime(OffloadConfig(shutdown_timeout=30)):
        tasks = BackgroundTasks(detach=True)
        tasks.add_task(ran.append, "late")
        group.start_soon(send_late, tasks)
    assert ran == ["late"]
    assert abandoned_log(caplog) == []


async def test_a_list_handed_over_after_the_runtime_closed_fails_naming_its_tasks() -> None:
    async with Runtime(OffloadConfig(shutdown_timeout=0.05)):
        tasks = BackgroundTasks(detach=True)
        tasks.add_task(anyio.sleep, 0).set(name="too late")
    with pytest.raises(
        OffloadError, match=r"closed before the detached tasks \['too late'\] were handed to it"
    ):
        await tasks()


async def test_an_in_place_list_cancelled_by_its_caller_names_what_did_not_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    tasks.add_task(anyio.sleep, 0).set(name="done")
    tasks.add_task(anyio.sleep, 30).set(name="cut short")
    tasks.add_task(anyio.sleep, 0).set(name="never started")
    with anyio.move_on_after(0.1):
        await tasks()
    (record,) = [r for r in caplog.records if "cancelled before they ended" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        "Background tasks cancelled before they ended: cut short, never started (2); "
    )
    assert [r.status for r in tasks.reports] == ["succeeded", "skipped", "skipped"]


async def test_a_runtime_can_be_entered_again_once_closed_but_not_twice_at_once() -> None:
    runtime = Runtime()
    for _ in range(2):
        async with runtime:
            with pytest.raises(RuntimeError, match="is already entered; enter a runtime once"):
                await runtime.__aenter__()
            tasks = BackgroundTasks([lambda: None], detach=True)
            await tasks()
        assert [r.status for r in tasks.reports] == ["succeeded"]
