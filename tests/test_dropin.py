"""Drop-in compatibility: offload's tasks where Starlette's and FastAPI's were."""

from __future__ import annotations

import threading

import anyio
import pytest
import starlette.background
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from offload import BackgroundTask, BackgroundTasks


class Boom(Exception):
    pass


def make_app(log: list[str]) -> Starlette:
    def sync_task(name: str, *, suffix: str = "") -> None:
        log.append(f"sync {name}{suffix} {threading.current_thread() is not main}")

    async def async_task(name: str) -> None:
        log.append(f"async {name}")

    def failing_task() -> None:
        raise Boom("task failed")

    async def single(request: Request) -> Response:
        return JSONResponse({"ok": True}, background=BackgroundTask(sync_task, "one", suffix="!"))  # type: ignore[arg-type]

    async def several(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(sync_task, "a")
        tasks.add_task(async_task, "b")
        tasks.add_task(sync_task, "c", suffix="?")
        # Starlette's annotation names its own class; offload's tasks match it by behaviour.
        return JSONResponse({"ok": True}, background=tasks)  # type: ignore[arg-type]

    async def failing(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(async_task, "before")
        tasks.add_task(failing_task)
        tasks.add_task(async_task, "after")
        # Starlette's annotation names its own class; offload's tasks match it by behaviour.
        return JSONResponse({"ok": True}, background=tasks)  # type: ignore[arg-type]

    main = threading.current_thread()
    return Starlette(
        routes=[Route("/single", single), Route("/several", several), Route("/failing", failing)]
    )


def test_a_single_task_runs_in_a_thread_with_its_arguments() -> None:
    log: list[str] = []
    with TestClient(make_app(log)) as client:
        assert client.get("/single").json() == {"ok": True}
    assert log == ["sync one! True"]


def test_tasks_run_in_order_sync_in_threads_async_on_the_loop() -> None:
    log: list[str] = []
    with TestClient(make_app(log)) as client:
        assert client.get("/several").status_code == 200
    assert log == ["sync a True", "async b", "sync c? True"]


def test_the_first_failure_stops_the_rest_and_propagates() -> None:
    log: list[str] = []
    with TestClient(make_app(log)) as client, pytest.raises(Boom, match="task failed"):
        client.get("/failing")
    assert log == ["async before"]


def test_fastapi_accepts_offload_tasks_as_a_response_background() -> None:
    log: list[str] = []
    app = FastAPI()

    def record(name: str) -> None:
        log.append(name)

    @app.get("/")
    async def endpoint() -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(record, "first")
        tasks.add_task(record, name="second")
        return JSONResponse({"ok": True}, background=tasks)  # type: ignore[arg-type]

    with TestClient(app) as client:
        assert client.get("/").json() == {"ok": True}
    assert log == ["first", "second"]


# Starlette's own tasks, and what an app makes of them.


def record(log: list[str], name: str) -> None:
    log.append(f"{name} {threading.current_thread() is not threading.main_thread()}")


def test_func_may_be_given_by_keyword_as_in_starlette() -> None:
    log: list[str] = []
    task = BackgroundTask(func=record, log=log, name="task")
    tasks = BackgroundTasks()
    tasks.add_task(func=record, log=log, name="added")
    assert task.func is record
    anyio_run_all([task, *tasks.tasks])
    assert log == ["task True", "added True"]


def anyio_run_all(tasks: list[BackgroundTask]) -> None:
    anyio.run(BackgroundTasks(tasks))


def test_starlette_tasks_are_unpacked_to_their_function() -> None:
    log: list[str] = []
    tasks = BackgroundTasks([starlette.background.BackgroundTask(record, log, "plain")])
    assert [task.func for task in tasks.tasks] == [record]
    assert tasks.tasks[0].name == "record"  # named by the function, not a repr of the wrapper
    anyio_run_all(tasks.tasks)
    assert log == ["plain True"]  # a sync function: on offload's thread executor


def test_a_task_class_that_overrides_call_is_run_whole() -> None:
    log: list[str] = []

    class Retried(starlette.background.BackgroundTask):
        async def __call__(self) -> None:
            log.append("around")
            await super().__call__()

    tasks = BackgroundTasks([Retried(record, log, "wrapped")])
    assert tasks.tasks[0].is_async
    anyio_run_all(tasks.tasks)
    assert log == ["around", "wrapped True"]  # the subclass's __call__ ran, then Starlette's


def test_a_task_class_that_only_extends_a_framework_one_is_unpacked() -> None:
    class Named(starlette.background.BackgroundTask):
        pass

    tasks = BackgroundTasks([Named(record, [], "x")])
    assert tasks.tasks[0].func is record
