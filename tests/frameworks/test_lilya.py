"""offload with Lilya, the real package: its task objects and lists given to offload, and
``offload.lilya``'s task classes and responses in an app served by uvicorn."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from lilya import responses
from lilya.background import Task as LilyaTask
from lilya.background import Tasks as LilyaTasks
from lilya.concurrency import AsyncCallable
from lilya_examples import serve_example
from lilya_marks import wait_for_mark, write_mark
from lilya_testapp import make_app

import offload
from offload import BackgroundTask, BackgroundTasks, OffloadConfig, TaskReport
from offload.lilya import JSONResponse, PlainText, Task, Tasks
from servers import SENT, call_once
from servers import serve as serve_in_thread
from test_docs import python_samples, run_sample

DOCS_PAGE = Path(__file__).parent.parent.parent / "docs" / "frameworks" / "lilya.md"


def record(log: list[str], name: str) -> None:
    log.append(name)


class Overlap:
    """Counts the sync tasks running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def task(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1


# The app --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["backgrounds", "background"])
def test_an_app_runs_sync_async_and_process_tasks_through_offload(
    route: str, tmp_path: Path
) -> None:
    reports: list[TaskReport] = []
    with serve_in_thread(make_app(reports.append)) as url:
        response = httpx.get(f"{url}/{route}", params={"marks": str(tmp_path)})
        assert response.json() == {"route": route}
        pids = {name: wait_for_mark(tmp_path, name) for name in ("sync", "async", "process")}
    assert pids["sync"] == pids["async"] == os.getpid()  # the server runs in this process
    assert pids["process"] != os.getpid()  # a worker process
    # Lilya's own tasks were unpacked: named by their function, on offload's executors.
    ran = {(report.name, report.executor, report.status) for report in reports}
    assert ran == {
        ("write_mark", "thread", "succeeded"),
        ("write_mark_async", "inline", "succeeded"),
        ("write_mark", "process", "succeeded"),
    }


def test_lilyas_own_response_runs_one_offload_lilya_task(tmp_path: Path) -> None:
    reports: list[TaskReport] = []
    with serve_in_thread(make_app(reports.append)) as url:
        assert httpx.get(f"{url}/task", params={"marks": str(tmp_path)}).text == "task"
        assert wait_for_mark(tmp_path, "process") != os.getpid()
    assert [(report.name, report.executor) for report in reports] == [("write_mark", "process")]


def test_the_example_app_serves_its_three_tasks() -> None:
    with serve_example("lilya_app") as (url, output):
        response = httpx.post(f"{url}/reports/42")
        assert response.json() == {"report": 42, "status": "accepted"}
        output.wait_for("report 42: audited")
        output.wait_for("report 42 rendered")
        output.wait_for("report 42: notification sent")


def test_the_samples_of_the_docs_page_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A module, so that what the samples define can be pickled by name.
    module = ModuleType("lilya_docs_sample")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    namespace["email"] = "ada@example.com"  # what the fragments take as given
    samples = python_samples(DOCS_PAGE)
    assert samples
    for sample in samples:
        run_sample(sample, namespace)


# Lilya's own task objects, given to offload -----------------------------------------------------


def test_lilya_tasks_are_unpacked_to_their_function() -> None:
    log: list[str] = []
    tasks = BackgroundTasks(
        [LilyaTask(record, log, "positional"), LilyaTask(record, log, name="kw")]
    )
    # The function itself, not Lilya's adapter (lilya.concurrency.AsyncCallable) around it.
    assert [task.func for task in tasks.tasks] == [record, record]
    assert [task.name for task in tasks.tasks] == ["record", "record"]
    anyio.run(tasks)
    assert log == ["positional", "kw"]


def test_lilya_tasks_given_func_by_keyword_are_unpacked() -> None:
    log: list[str] = []
    lilya_list = LilyaTasks()
    lilya_list.add_task(func=record, log=log, name="added")
    tasks = BackgroundTasks([LilyaTask(func=record, log=log, name="task"), lilya_list])
    assert [task.func for task in tasks.tasks] == [record, record]
    anyio.run(tasks)
    assert log == ["task", "added"]


def test_sync_lilya_tasks_run_on_offloads_thread_executor_within_thread_limit() -> None:
    overlap = Overlap()
    lilya_list = LilyaTasks([LilyaTask(overlap.task) for _ in range(3)], as_group=True)

    async def main() -> list[TaskReport]:
        async with offload.Runtime(OffloadConfig(thread_limit=1)):
            tasks = BackgroundTasks([lilya_list])
            await tasks()
            return tasks.reports

    reports = anyio.run(main)
    assert [report.executor for report in reports] == ["thread"] * 3
    # Lilya's own pool would run all three at once; offload's limiter lets one through.
    assert overlap.most == 1


def test_the_keyword_arguments_of_lilyas_adapter_are_kept() -> None:
    log: list[str] = []

    def greet(log: list[str], greeting: str = "default", name: str = "ada") -> None:
        log.append(f"{greeting} {name}")

    task = LilyaTask(greet, log, name="grace")
    # Lilya's adapter may carry keyword arguments of its own; the task's come on top.
    task.func = AsyncCallable(greet, greeting="hello", name="adapter's")
    tasks = BackgroundTasks([task])
    assert tasks.tasks[0].func is greet
    anyio.run(tasks)
    assert log == ["hello grace"]


def test_a_chooser_sees_the_function_of_a_lilya_task() -> None:
    seen: list[object] = []

    def chooser(task: BackgroundTask) -> str:
        seen.append(task.func)
        return "inline"

    BackgroundTasks([LilyaTask(record, [], "x")], executor=chooser)
    assert seen == [record]


def test_the_process_executor_pickles_the_function_of_a_lilya_task(tmp_path: Path) -> None:
    async def main() -> BackgroundTasks:
        async with offload.Runtime(OffloadConfig(process_workers=1)):
            tasks = BackgroundTasks(
                [LilyaTask(write_mark, str(tmp_path), "process")], executor="process"
            )
            await tasks()
            return tasks

    tasks = anyio.run(main)
    payload = tasks.tasks[0].payload
    assert payload is not None
    assert b"write_mark" in payload
    assert b"AsyncCallable" not in payload
    assert wait_for_mark(tmp_path, "process") != os.getpid()
    assert [(report.name, report.executor) for report in tasks.reports] == [
        ("write_mark", "process")
    ]


def test_a_lilya_task_class_that_overrides_call_is_run_whole() -> None:
    log: list[str] = []

    class Logged(LilyaTask):
        async def __call__(self) -> None:
            log.append("around")
            await super().__call__()

    tasks = BackgroundTasks([Logged(record, log, "inside")])
    anyio.run(tasks)
    assert log == ["around", "inside"]
    assert tasks.reports[0].executor == "inline"  # the app's __call__, awaited as a whole


# Lilya's group flag -----------------------------------------------------------------------------


def test_a_lilya_list_as_group_runs_its_tasks_at_once() -> None:
    # The barrier lets the tasks through only when all three wait at it together.
    barrier = threading.Barrier(3, timeout=10)
    lilya_list = LilyaTasks([LilyaTask(barrier.wait) for _ in range(3)], as_group=True)
    response = JSONResponse({}, backgrounds=[lilya_list])
    assert response.background.concurrency == "group"
    anyio.run(response.background)
    assert [report.status for report in response.background.reports] == ["succeeded"] * 3


def test_the_responses_own_concurrency_wins_over_a_lilya_group_flag() -> None:
    overlap = Overlap()
    lilya_list = LilyaTasks([LilyaTask(overlap.task) for _ in range(3)], as_group=True)
    response = JSONResponse({}, backgrounds=[lilya_list], concurrency="sequential")
    assert response.background.concurrency == "sequential"
    anyio.run(response.background)
    assert overlap.most == 1


def test_offload_lilya_tasks_as_group_run_at_once() -> None:
    barrier = threading.Barrier(3, timeout=10)
    tasks = Tasks(as_group=True)
    for _ in range(3):
        tasks.add_task(barrier.wait)
    assert tasks.as_group
    anyio.run(tasks)
    assert [report.status for report in tasks.reports] == ["succeeded"] * 3
    assert not Tasks(as_group=True, concurrency="sequential").as_group


# offload.lilya ----------------------------------------------------------------------------------


def test_offload_lilya_tasks_are_lilyas_own_classes() -> None:
    task = Task(record, [], "x")
    tasks = Tasks([task])
    assert isinstance(task, LilyaTask)
    assert isinstance(tasks, LilyaTasks)
    func: object = task.func  # typed by Lilya as its adapter's type
    assert func is record  # the function itself, not Lilya's adapter
    assert tasks.tasks == [task.__offload__]


@pytest.mark.anyio
async def test_lilyas_own_response_runs_offload_lilya_tasks_with_their_options() -> None:
    log: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    tasks = Tasks(on_error="continue")
    tasks.add_task(fail).set(name="failing")
    tasks.add_task(func=record, log=log, name="after")
    events: list[str] = []
    response = responses.PlainText("ok", background=tasks)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await response(scope, receive, send)

    await call_once(app, events)
    assert events == [SENT]
    assert log == ["after"]  # "continue": the failure did not stop the list
    assert [(report.name, report.status) for report in tasks.reports] == [
        ("failing", "failed"),
        ("record", "succeeded"),
    ]


@pytest.mark.anyio
async def test_one_offload_lilya_task_keeps_its_options() -> None:
    log: list[str] = []
    task = Task(func=record, log=log, name="one").set(name="renamed", executor="inline")
    assert task.name == "renamed"
    await task()
    assert log == ["one"]


@pytest.mark.anyio
async def test_the_responses_take_every_kind_of_task() -> None:
    log: list[str] = []
    lilya_list = LilyaTasks()
    lilya_list.add_task(record, log, "lilya list")
    response = PlainText(
        "ok",
        backgrounds=[
            LilyaTask(record, log, "lilya task"),
            lilya_list,
            Task(record, log, "offload.lilya task"),
            BackgroundTask(record, log, "offload task"),
        ],
    )
    await response.background()
    assert log == ["lilya task", "lilya list", "offload.lilya task", "offload task"]


def test_a_response_keeps_the_policy_of_an_offload_lilya_list_given_as_background() -> None:
    tasks = Tasks(on_error="continue", concurrency="group")
    tasks.add_task(record, [], "x")
    response = JSONResponse({}, background=tasks, backgrounds=[BackgroundTask(record, [], "y")])
    assert response.background.on_error == "continue"
    assert response.background.concurrency == "group"
    assert [task.name for task in response.background.tasks] == ["record", "record"]


def test_the_repr_of_a_task_shows_no_argument() -> None:
    task = Task(record, [], "secret-token")
    tasks = Tasks([task])
    for text in (repr(task), str(task), repr(tasks), str(tasks)):
        assert "secret-token" not in text
    assert repr(task) == "<Task 'record'>"
