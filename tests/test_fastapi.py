"""offload.fastapi.Backgrounds: one offload task list per request, never dropped."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run
# time, and those of endpoints defined inside a test name the test's local dependencies.

import importlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import pytest
from fastapi import BackgroundTasks as FastAPIBackgroundTasks
from fastapi import Depends, FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask as StarletteTask
from starlette.responses import JSONResponse as StarletteJSONResponse

import offload
from offload import (
    BackgroundTask,
    NotPicklable,
    OffloadConfig,
    TaskReport,
    configure,
    task_options,
)
from offload.fastapi import Backgrounds, request_backgrounds
from offload.starlette import JSONResponse
from recording import register
from servers import SENT, call_once, post_to_example


@pytest.fixture
def reports() -> list[TaskReport]:
    """Every report of the default runtime, so a test can see which tasks ran through offload."""
    collected: list[TaskReport] = []
    configure(OffloadConfig(on_report=collected.append))
    return collected


class TaskFailed(Exception):
    pass


def fail() -> None:
    raise TaskFailed("boom")


@pytest.mark.anyio
async def test_tasks_run_through_offload_after_the_response(reports: list[TaskReport]) -> None:
    app = FastAPI()
    events: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> dict[str, bool]:
        tasks.add_task(events.append, "task")
        return {"ok": True}

    await call_once(app, events)
    assert events == [SENT, "task"]
    assert [r.name for r in reports] == ["list.append"]


def test_a_sync_endpoint_gets_the_list_too(reports: list[TaskReport]) -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(ran.append, "sync endpoint")

    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert ran == ["sync endpoint"]
    assert len(reports) == 1


def test_one_list_per_request_shared_with_dependencies_theirs_first() -> None:
    app = FastAPI()
    ran: list[str] = []
    seen: list[offload.BackgroundTasks] = []

    def inner(tasks: Backgrounds) -> None:
        seen.append(tasks)
        tasks.add_task(ran.append, "inner dependency")

    async def outer(tasks: Backgrounds, _: None = Depends(inner)) -> AsyncIterator[None]:
        seen.append(tasks)
        tasks.add_task(ran.append, "outer dependency")
        yield

    @app.get("/")
    async def endpoint(tasks: Backgrounds, _: None = Depends(outer)) -> None:
        seen.append(tasks)
        tasks.add_task(ran.append, "endpoint")

    with TestClient(app) as client:
        client.get("/")
        client.get("/")
    assert ran == ["inner dependency", "outer dependency", "endpoint"] * 2
    first, second = seen[:3], seen[3:]
    assert all(tasks is first[0] for tasks in first)
    assert all(tasks is second[0] for tasks in second)
    assert first[0] is not second[0]


def test_an_uncached_declaration_still_gets_the_requests_list() -> None:
    app = FastAPI()
    ran: list[str] = []
    Uncached = Annotated[offload.BackgroundTasks, Depends(request_backgrounds, use_cache=False)]

    def dependency(tasks: Uncached) -> offload.BackgroundTasks:
        tasks.add_task(ran.append, "dependency")
        return tasks

    @app.get("/")
    async def endpoint(
        tasks: Backgrounds, their: Annotated[offload.BackgroundTasks, Depends(dependency)]
    ) -> bool:
        tasks.add_task(ran.append, "endpoint")
        return tasks is their

    with TestClient(app) as client:
        assert client.get("/").json() is True
    assert ran == ["dependency", "endpoint"]


@pytest.mark.anyio
async def test_a_returned_response_with_its_own_background_does_not_drop_them() -> None:
    app = FastAPI()
    events: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> StarletteJSONResponse:
        tasks.add_task(events.append, "Backgrounds task")
        return StarletteJSONResponse({}, background=StarletteTask(events.append, "own task"))

    await call_once(app, events)
    # FastAPI alone would run only "own task"; the injected ones follow it.
    assert events == [SENT, "own task", "Backgrounds task"]


def test_a_returned_offload_response_keeps_both_lists() -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> JSONResponse:
        tasks.add_task(ran.append, "Backgrounds task")
        return JSONResponse({}, backgrounds=[BackgroundTask(ran.append, "response task")])

    with TestClient(app) as client:
        client.get("/")
    assert ran == ["response task", "Backgrounds task"]


def test_a_returned_response_without_background_runs_them_once() -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> StarletteJSONResponse:
        tasks.add_task(ran.append, "once")
        return StarletteJSONResponse({})

    with TestClient(app) as client:
        client.get("/")
    assert ran == ["once"]


def test_fastapis_own_background_tasks_still_run_alongside() -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds, fastapi_tasks: FastAPIBackgroundTasks) -> None:
        tasks.add_task(ran.append, "offload")
        fastapi_tasks.add_task(ran.append, "fastapi")

    with TestClient(app) as client:
        client.get("/")
    assert sorted(ran) == ["fastapi", "offload"]


def test_an_offload_response_class_runs_fastapis_injected_tasks_through_offload(
    reports: list[TaskReport],
) -> None:
    app = FastAPI(default_response_class=JSONResponse)
    ran: list[str] = []

    @app.get("/")
    async def endpoint(fastapi_tasks: FastAPIBackgroundTasks) -> dict[str, bool]:
        fastapi_tasks.add_task(ran.append, "fastapi")
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/").json() == {"ok": True}
    assert ran == ["fastapi"]
    assert [r.name for r in reports] == ["list.append"]


def test_each_task_may_choose_its_executor() -> None:
    recorders = register("mine")
    app = FastAPI()

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(print).set(executor="mine", name="chosen")

    with TestClient(app) as client:
        client.get("/")
    assert recorders["mine"].ran == ["chosen"]


@task_options(executor="process")
def record(value: object) -> None:
    pass


def test_an_unpicklable_process_task_fails_the_endpoint_with_a_500() -> None:
    # Needs the process executor.
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(record, threading.Lock())  # a lock cannot be pickled
        tasks.add_task(ran.append, "never")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500
    with TestClient(app) as client, pytest.raises(NotPicklable, match="record"):
        client.get("/")
    assert ran == []


def test_an_endpoint_that_raises_runs_no_task_as_fastapi_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(ran.append, "never").set(name="never")
        raise HTTPException(status_code=409, detail="conflict")

    with TestClient(app) as client:
        assert client.get("/").status_code == 409
    assert ran == []
    assert "Background tasks not run, since the request ended with HTTPException: never" in (
        caplog.text
    )


def test_tasks_a_failing_response_background_kept_from_running_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> StarletteJSONResponse:
        tasks.add_task(ran.append, "offload task").set(name="audit")
        return StarletteJSONResponse({"ok": True}, background=StarletteTask(fail))

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").json() == {"ok": True}
    assert ran == []
    assert "Background tasks not run, since the request ended with TaskFailed: audit" in (
        caplog.text
    )


@pytest.mark.parametrize("own_background", [False, True])
def test_a_failure_under_raise_reaches_the_server_after_the_response(
    own_background: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> StarletteJSONResponse:
        tasks.add_task(fail)
        background = StarletteTask(print) if own_background else None
        return StarletteJSONResponse({"ok": True}, background=background)

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").json() == {"ok": True}
    with TestClient(app) as client, pytest.raises(TaskFailed):
        client.get("/")
    assert any(r.name == "offload" and r.exc_info for r in caplog.records)


def test_backgrounds_adds_nothing_to_the_openapi_schema() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def endpoint(item_id: int, tasks: Backgrounds) -> None:
        pass

    parameters = app.openapi()["paths"]["/items/{item_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["item_id"]


def test_backgrounds_can_be_overridden_in_tests() -> None:
    app = FastAPI()
    fake = offload.BackgroundTasks()

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(print)

    def fake_backgrounds() -> Iterator[offload.BackgroundTasks]:
        yield fake

    app.dependency_overrides[request_backgrounds] = fake_backgrounds
    with TestClient(app) as client:
        client.get("/")
    assert [t.name for t in fake.tasks] == ["print"]


def test_without_fastapi_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "fastapi"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "offload.fastapi")
    with pytest.raises(ImportError, match=r"'fastapi' extra: pip install \"offload\[fastapi\]\""):
        importlib.import_module("offload.fastapi")


def test_the_example_app_works_as_pasted() -> None:
    # Needs the process executor.
    printed = post_to_example("fastapi_app", "/reports/42")
    assert printed.splitlines() == [
        "the app's own startup: open pools, clients...",
        "report 42 rendered: 1f791304cd53f282",
        "report 42: notification sent",
        '200 {"report":42,"status":"accepted"}',
        "the app's own shutdown: offload has drained its tasks by now",
    ]


def test_tasks_run_while_the_requests_dependencies_are_open() -> None:
    app = FastAPI()
    events: list[str] = []

    async def database() -> AsyncIterator[str]:
        events.append("opened")
        yield "connection"
        events.append("closed")

    def use(connection: str) -> None:
        events.append(f"task uses the {connection}")

    @app.get("/")
    async def endpoint(tasks: Backgrounds, connection: Annotated[str, Depends(database)]) -> None:
        tasks.add_task(use, connection)

    with TestClient(app) as client:
        client.get("/")
    assert events == ["opened", "task uses the connection", "closed"]


def test_a_websocket_endpoint_that_returns_runs_its_tasks() -> None:
    app = FastAPI()
    ran: list[str] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, tasks: Backgrounds) -> None:
        await websocket.accept()
        try:
            while True:
                tasks.add_task(ran.append, await websocket.receive_text())
        except WebSocketDisconnect:
            return  # the client left: its messages' tasks still run

    with TestClient(app) as client:
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("hello")
            websocket.send_text("bye")
        deadline = time.monotonic() + 10
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ran == ["hello", "bye"]
