"""Tests that Ravyn and Esmerald share: both are built on Lilya, and offload meets them alike.

Each framework's test file binds them to its own package (they cannot share an environment:
their Lilya pins differ), with a subclass of :class:`LilyaFamilyTests` that sets its
:class:`Framework`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from lilya_examples import serve_example
from lilya_marks import wait_for_mark, write_mark

import offload
from offload import OffloadConfig, TaskReport
from offload.lilya import JSONResponse
from servers import serve as serve_in_thread
from test_docs import python_samples, run_sample

DOCS = Path(__file__).parent.parent.parent / "docs" / "frameworks"


@dataclass(frozen=True)
class Framework:
    """One framework of the family, as the shared tests need it."""

    name: str
    #: Its ``background`` module: its own ``BackgroundTask`` and ``BackgroundTasks``.
    background: Any
    #: Its response data structures that take ``background=``.
    redirect: Callable[..., Any]
    stream: Callable[..., Any]
    file: Callable[..., Any]
    response: Callable[..., Any]
    #: ``make_app(marks, on_report)``: the test app, served by uvicorn.
    make_app: Callable[[str, Callable[[TaskReport], object]], Any]
    #: ``offload.<name>``'s ``BackgroundTask`` and ``BackgroundTasks``.
    task: Any
    tasks: Any
    #: What it raises when a response data structure refuses a task (pydantic's).
    refused: type[Exception]


def record(log: list[str], name: str) -> None:
    log.append(name)


class LilyaFamilyTests:
    framework: ClassVar[Framework]

    def served(
        self, path: str, marks: Path, names: list[str], requests: int = 1
    ) -> tuple[dict[str, int], list[TaskReport]]:
        """GET ``path`` from the app ``requests`` times, and wait for the marks ``names``;
        return their pids and the reports of the tasks, once the server has stopped."""
        reports: list[TaskReport] = []
        with serve_in_thread(self.framework.make_app(str(marks), reports.append)) as url:
            for _ in range(requests):
                response = httpx.get(f"{url}{path}", follow_redirects=False)
                assert response.status_code < 400, response.text
            pids = {name: wait_for_mark(marks, name) for name in names}
        return pids, reports

    # The app -------------------------------------------------------------------------------

    def test_a_handlers_background_runs_sync_async_and_process_tasks(self, tmp_path: Path) -> None:
        pids, reports = self.served("/handler", tmp_path, ["sync", "async", "process"], 2)
        assert pids["sync"] == pids["async"] == os.getpid()  # the server runs in this process
        assert pids["process"] != os.getpid()  # a worker process
        # One list for every request, run by each (the server drained both runs before it
        # stopped).
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
    def test_its_responses_run_its_offload_tasks(
        self, path: str, mark: str, executor: str, tmp_path: Path
    ) -> None:
        pids, reports = self.served(path, tmp_path, [mark])
        assert (pids[mark] != os.getpid()) is (executor == "process")
        assert [(r.executor, r.status) for r in reports] == [(executor, "succeeded")]

    def test_its_own_tasks_given_to_backgrounds_run_on_offloads_executors(
        self, tmp_path: Path
    ) -> None:
        path = f"/{self.framework.name}-tasks"
        pids, reports = self.served(path, tmp_path, ["sync", "async", "process"])
        assert pids["sync"] == pids["async"] == os.getpid()
        assert pids["process"] != os.getpid()
        assert {(report.name, report.executor) for report in reports} == {
            ("write_mark", "thread"),
            ("write_mark_async", "inline"),
            ("write_mark", "process"),
        }

    def test_the_example_app_serves_its_three_tasks(self) -> None:
        with serve_example(f"{self.framework.name}_app") as (url, output):
            response = httpx.post(f"{url}/reports/42")
            assert response.json() == {"report": 42, "status": "accepted"}
            output.wait_for("report 42: audited")
            output.wait_for("report 42 rendered")
            output.wait_for("report 42: notification sent")

    def test_the_samples_of_the_docs_page_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        # A module, so that what the samples define can be pickled by name.
        module = ModuleType(f"{self.framework.name}_docs_sample")
        monkeypatch.setitem(sys.modules, module.__name__, module)
        samples = python_samples(DOCS / f"{self.framework.name}.md")
        assert samples
        for sample in samples:
            run_sample(sample, module.__dict__)

    # offload.<framework> -------------------------------------------------------------------

    def test_its_offload_tasks_are_its_own_classes(self) -> None:
        own = self.framework.background
        task = self.framework.task(record, [], "x")
        assert isinstance(task, own.BackgroundTask)
        assert isinstance(self.framework.tasks([task]), own.BackgroundTasks)

    @pytest.mark.parametrize("structure", ["redirect", "stream", "file"])
    def test_its_response_data_structures_take_its_offload_tasks(self, structure: str) -> None:
        framework = self.framework
        make: Callable[[object], Any] = {
            "redirect": lambda task: framework.redirect(path="/", background=task),
            "stream": lambda task: framework.stream(iterator=iter([b""]), background=task),
            "file": lambda task: framework.file(
                path=Path(__file__), filename="f.py", background=task
            ),
        }[structure]
        task = framework.task(record, [], "x")
        assert make(task).background is task
        tasks = framework.tasks([task])
        assert make(tasks).background is tasks
        # offload's plain tasks are refused: the reason offload.<framework> exists.
        with pytest.raises(framework.refused, match="instance of BackgroundTask"):
            make(offload.BackgroundTask(record, [], "x"))

    @pytest.mark.anyio
    async def test_its_response_runs_its_offload_tasks_with_their_options(self) -> None:
        log: list[str] = []

        def fail() -> None:
            raise RuntimeError("boom")

        tasks = self.framework.tasks(on_error="continue")
        tasks.add_task(fail).set(name="failing", retries=1)
        tasks.add_task(func=record, log=log, name="after")
        response = self.framework.response("ok", background=tasks)
        assert response.background is tasks
        await tasks()
        assert log == ["after"]  # "continue": the failure did not stop the list
        assert [(r.name, r.status, r.attempts) for r in tasks.reports] == [
            ("failing", "failed", 2),
            ("record", "succeeded", 1),
        ]

    def test_its_offload_lists_as_group_run_their_tasks_at_once(self) -> None:
        # The barrier lets the tasks through only when all three wait at it together.
        barrier = threading.Barrier(3, timeout=10)
        task = self.framework.task
        tasks = self.framework.tasks([task(barrier.wait) for _ in range(3)], as_group=True)
        anyio.run(tasks)
        assert [report.status for report in tasks.reports] == ["succeeded"] * 3

    # The framework's own task objects, given to offload ------------------------------------

    def test_its_own_tasks_are_unpacked_to_their_function(self) -> None:
        own = self.framework.background
        log: list[str] = []
        own_list = own.BackgroundTasks()
        own_list.add_task(func=record, log=log, name="added")
        tasks = offload.BackgroundTasks(
            [own.BackgroundTask(func=record, log=log, name="task"), own_list]
        )
        assert [task.func for task in tasks.tasks] == [record, record]
        assert [task.name for task in tasks.tasks] == ["record", "record"]
        anyio.run(tasks)
        assert log == ["task", "added"]
        assert [report.executor for report in tasks.reports] == ["thread", "thread"]

    def test_a_chooser_sees_the_function_of_its_task(self) -> None:
        seen: list[object] = []

        def chooser(task: offload.BackgroundTask) -> str:
            seen.append(task.func)
            return "inline"

        own_task = self.framework.background.BackgroundTask(record, [], "x")
        offload.BackgroundTasks([own_task], executor=chooser)
        assert seen == [record]

    def test_the_process_executor_pickles_the_function_of_its_task(self, tmp_path: Path) -> None:
        own = self.framework.background

        async def main() -> offload.BackgroundTasks:
            async with offload.Runtime(OffloadConfig(process_workers=1)):
                task = own.BackgroundTask(write_mark, str(tmp_path), "process")
                tasks = offload.BackgroundTasks([task], executor="process")
                await tasks()
                return tasks

        tasks = anyio.run(main)
        payload = tasks.tasks[0].payload
        assert payload is not None
        assert b"AsyncCallable" not in payload
        assert wait_for_mark(tmp_path, "process") != os.getpid()

    def test_its_list_as_group_runs_its_tasks_at_once(self) -> None:
        own = self.framework.background
        barrier = threading.Barrier(3, timeout=10)
        own_list = own.BackgroundTasks(
            [own.BackgroundTask(barrier.wait) for _ in range(3)], as_group=True
        )
        response = JSONResponse({}, backgrounds=[own_list])
        assert response.background.concurrency == "group"
        anyio.run(response.background)
        assert [report.status for report in response.background.reports] == ["succeeded"] * 3
