"""offload with Esmerald, the real package: ``offload.esmerald``'s task classes where
Esmerald checks its own (handlers' ``background=``, its response data structures), and
Esmerald's own tasks given to offload, in an app served by uvicorn."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pydantic
import pytest
from esmerald import background as esmerald_background
from esmerald.core.datastructures import File, Redirect, Stream
from esmerald.responses import Response as EsmeraldResponse
from esmerald_testapp import make_app
from lilya_examples import serve_example
from lilya_marks import wait_for_mark, write_mark

import offload
from offload import OffloadConfig, TaskReport
from offload.esmerald import BackgroundTask, BackgroundTasks
from offload.lilya import JSONResponse
from servers import serve as serve_in_thread
from test_docs import python_samples, run_sample

DOCS_PAGE = Path(__file__).parent.parent.parent / "docs" / "frameworks" / "esmerald.md"


def record(log: list[str], name: str) -> None:
    log.append(name)


def served(
    path: str, marks: Path, names: list[str], requests: int = 1
) -> tuple[dict[str, int], list[TaskReport]]:
    """GET ``path`` from the app ``requests`` times, and wait for the marks ``names``; return
    their pids and the reports of the tasks, once the server has stopped."""
    reports: list[TaskReport] = []
    with serve_in_thread(make_app(str(marks), reports.append)) as url:
        for _ in range(requests):
            response = httpx.get(f"{url}{path}", follow_redirects=False)
            assert response.status_code < 400, response.text
        pids = {name: wait_for_mark(marks, name) for name in names}
    return pids, reports


# The app --------------------------------------------------------------------------------------


def test_a_handlers_background_runs_sync_async_and_process_tasks(tmp_path: Path) -> None:
    pids, reports = served("/handler", tmp_path, ["sync", "async", "process"], requests=2)
    assert pids["sync"] == pids["async"] == os.getpid()  # the server runs in this process
    assert pids["process"] != os.getpid()  # a worker process
    # One list for every request, run by each (the server drained both runs before it stopped).
    ran = sorted((report.name, report.executor, report.status) for report in reports)
    assert ran == sorted(
        2
        * [
            ("write_mark", "process", "succeeded"),
            ("write_mark", "thread", "succeeded"),
            ("write_mark_async", "inline", "succeeded"),
        ]
    )


@pytest.mark.parametrize(
    ("path", "mark", "executor"),
    [
        ("/redirect", "redirect", "process"),
        ("/stream", "stream", "inline"),
        ("/file", "file", "thread"),
        ("/json", "json", "process"),
    ],
)
def test_esmeralds_responses_run_offload_esmerald_tasks(
    path: str, mark: str, executor: str, tmp_path: Path
) -> None:
    pids, reports = served(path, tmp_path, [mark])
    assert (pids[mark] != os.getpid()) is (executor == "process")
    assert [(report.executor, report.status) for report in reports] == [(executor, "succeeded")]


def test_esmeralds_own_tasks_given_to_backgrounds_run_on_offloads_executors(tmp_path: Path) -> None:
    pids, reports = served("/esmerald-tasks", tmp_path, ["sync", "async", "process"])
    assert pids["sync"] == pids["async"] == os.getpid()
    assert pids["process"] != os.getpid()
    assert {(report.name, report.executor) for report in reports} == {
        ("write_mark", "thread"),
        ("write_mark_async", "inline"),
        ("write_mark", "process"),
    }


def test_the_example_app_serves_its_three_tasks() -> None:
    with serve_example("esmerald_app") as (url, output):
        response = httpx.post(f"{url}/reports/42")
        assert response.json() == {"report": 42, "status": "accepted"}
        output.wait_for("report 42: audited")
        output.wait_for("report 42 rendered")
        output.wait_for("report 42: notification sent")


def test_the_samples_of_the_docs_page_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A module, so that what the samples define can be pickled by name.
    module = ModuleType("esmerald_docs_sample")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    samples = python_samples(DOCS_PAGE)
    assert samples
    for sample in samples:
        run_sample(sample, module.__dict__)


# offload.esmerald ----------------------------------------------------------------------------


def test_offload_esmerald_tasks_are_esmeralds_own_classes() -> None:
    task = BackgroundTask(record, [], "x")
    assert isinstance(task, esmerald_background.BackgroundTask)
    assert isinstance(BackgroundTasks([task]), esmerald_background.BackgroundTasks)


@pytest.mark.parametrize(
    "make",
    [
        lambda task: Redirect(path="/", background=task),
        lambda task: Stream(iterator=iter([b""]), background=task),
        lambda task: File(path=Path(__file__), filename="f.py", background=task),
    ],
    ids=["Redirect", "Stream", "File"],
)
def test_esmeralds_response_data_structures_take_offload_esmerald_tasks(
    make: Callable[[object], Any],
) -> None:
    task = BackgroundTask(record, [], "x")
    assert make(task).background is task
    tasks = BackgroundTasks([task])
    assert make(tasks).background is tasks
    # offload's plain tasks are refused: the reason offload.esmerald exists.
    with pytest.raises(pydantic.ValidationError, match="instance of BackgroundTask"):
        make(offload.BackgroundTask(record, [], "x"))


@pytest.mark.anyio
async def test_esmeralds_response_runs_offload_esmerald_tasks_with_their_options() -> None:
    log: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(fail).set(name="failing", retries=1)
    tasks.add_task(func=record, log=log, name="after")
    response: EsmeraldResponse[str] = EsmeraldResponse("ok", background=tasks)
    assert response.background is tasks
    await tasks()
    assert log == ["after"]  # "continue": the failure did not stop the list
    assert [(r.name, r.status, r.attempts) for r in tasks.reports] == [
        ("failing", "failed", 2),
        ("record", "succeeded", 1),
    ]


def test_offload_esmerald_lists_as_group_run_their_tasks_at_once() -> None:
    # The barrier lets the tasks through only when all three wait at it together.
    barrier = threading.Barrier(3, timeout=10)
    tasks = BackgroundTasks([BackgroundTask(barrier.wait) for _ in range(3)], as_group=True)
    anyio.run(tasks)
    assert [report.status for report in tasks.reports] == ["succeeded"] * 3


# Esmerald's own task objects, given to offload -----------------------------------------------


def test_esmeralds_own_tasks_are_unpacked_to_their_function() -> None:
    log: list[str] = []
    esmerald_list = esmerald_background.BackgroundTasks()
    esmerald_list.add_task(func=record, log=log, name="added")
    tasks = offload.BackgroundTasks(
        [esmerald_background.BackgroundTask(func=record, log=log, name="task"), esmerald_list]
    )
    assert [task.func for task in tasks.tasks] == [record, record]
    assert [task.name for task in tasks.tasks] == ["record", "record"]
    anyio.run(tasks)
    assert log == ["task", "added"]
    assert [report.executor for report in tasks.reports] == ["thread", "thread"]


def test_a_chooser_sees_the_function_of_a_esmerald_task() -> None:
    seen: list[object] = []

    def chooser(task: offload.BackgroundTask) -> str:
        seen.append(task.func)
        return "inline"

    offload.BackgroundTasks([esmerald_background.BackgroundTask(record, [], "x")], executor=chooser)
    assert seen == [record]


def test_the_process_executor_pickles_the_function_of_a_esmerald_task(tmp_path: Path) -> None:
    async def main() -> offload.BackgroundTasks:
        async with offload.Runtime(OffloadConfig(process_workers=1)):
            task = esmerald_background.BackgroundTask(write_mark, str(tmp_path), "process")
            tasks = offload.BackgroundTasks([task], executor="process")
            await tasks()
            return tasks

    tasks = anyio.run(main)
    payload = tasks.tasks[0].payload
    assert payload is not None
    assert b"AsyncCallable" not in payload
    assert wait_for_mark(tmp_path, "process") != os.getpid()


def test_a_esmerald_list_as_group_runs_its_tasks_at_once() -> None:
    barrier = threading.Barrier(3, timeout=10)
    esmerald_list = esmerald_background.BackgroundTasks(
        [esmerald_background.BackgroundTask(barrier.wait) for _ in range(3)], as_group=True
    )
    response = JSONResponse({}, backgrounds=[esmerald_list])
    assert response.background.concurrency == "group"
    anyio.run(response.background)
    assert [report.status for report in response.background.reports] == ["succeeded"] * 3
