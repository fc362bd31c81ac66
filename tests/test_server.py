"""On a real uvicorn server on 127.0.0.1, with a real HTTP client: what a user's app sees."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import offload
from offload import BackgroundTask, OffloadConfig, TaskReport
from offload._config import OnError
from offload.fastapi import Backgrounds
from offload.starlette import JSONResponse, PlainTextResponse
from servers import burn_cpu, serve


class TaskFailed(Exception):
    pass


def fail() -> None:
    raise TaskFailed("boom in the background")


def test_the_client_has_the_response_before_a_one_second_task_ends() -> None:
    task_ended_at: list[float] = []

    def one_second_task() -> None:
        time.sleep(1.0)
        task_ended_at.append(time.monotonic())

    app = FastAPI(lifespan=offload.lifespan(OffloadConfig()))

    @app.get("/report")
    async def report(tasks: Backgrounds) -> dict[str, str]:
        tasks.add_task(one_second_task)
        return {"status": "accepted"}

    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.get("/report")  # returns once the whole body has arrived
        received_at = time.monotonic()
        assert response.json() == {"status": "accepted"}
        deadline = time.monotonic() + 20
        while not task_ended_at and time.monotonic() < deadline:
            time.sleep(0.01)
    # Ordering, not a duration: the body arrived while the task still had time to run.
    assert task_ended_at, "the background task never ended"
    assert received_at < task_ended_at[0]


def test_pings_are_answered_while_process_tasks_burn_cpu(tmp_path: Path) -> None:
    # Needs the process executor.
    reports: list[TaskReport] = []
    config = OffloadConfig(process_workers=2, on_report=reports.append)
    marks = [tmp_path / "first started", tmp_path / "second started"]

    async def heavy(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "accepted",
            backgrounds=[BackgroundTask(burn_cpu, 3.0, str(mark)) for mark in marks],
            executor="process",
            concurrency="group",
        )

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    app = Starlette(
        routes=[Route("/heavy", heavy), Route("/ping", ping)], lifespan=offload.lifespan(config)
    )
    with serve(app) as url:
        assert httpx.get(f"{url}/heavy", timeout=30).text == "accepted"
        deadline = time.monotonic() + 30
        while not all(mark.exists() for mark in marks) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(mark.exists() for mark in marks), "the process tasks never started"
        answered_while_running = 0
        while len(reports) < len(marks) and time.monotonic() < deadline:
            assert httpx.get(f"{url}/ping", timeout=30).text == "pong"
            if len(reports) < len(marks):
                answered_while_running += 1
            time.sleep(0.05)
    assert [r.status for r in reports] == ["succeeded", "succeeded"]
    assert {r.executor for r in reports} == {"process"}
    assert answered_while_running >= 1


@pytest.mark.parametrize("policy", ["raise", "stop", "continue", "collect"])
def test_a_failing_task_is_logged_and_the_next_request_is_served(
    policy: OnError, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="offload")
    done = threading.Event()

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(
            {"request": request.query_params["n"]},
            backgrounds=[fail, done.set],
            on_error=policy,
        )

    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(OffloadConfig()))
    with serve(app) as url:
        assert httpx.get(url, params={"n": 1}, timeout=30).json() == {"request": "1"}
        deadline = time.monotonic() + 20
        while not any(r.name == "offload" for r in caplog.records):
            assert time.monotonic() < deadline, "the failure was never logged"
            time.sleep(0.01)
        # A new connection: after an exception, uvicorn closes the one that carried it.
        assert httpx.get(url, params={"n": 2}, timeout=30).json() == {"request": "2"}
    failure = next(r for r in caplog.records if r.name == "offload")
    assert "'fail' failed" in failure.getMessage()
    assert failure.exc_info is not None
    assert failure.exc_info[0] is TaskFailed
    assert "boom in the background" in caplog.text  # the traceback is in the log
    assert done.is_set() == (policy in ("continue", "collect"))
