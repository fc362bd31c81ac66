"""Drop-in compatibility: offload's tasks where Starlette's and FastAPI's were."""

from __future__ import annotations

import threading

import pytest
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
