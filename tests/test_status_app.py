"""offload.status_app on a real uvicorn server, with a real HTTP client."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import offload
import process_tasks
from offload import BackgroundTasks
from servers import serve


def make_app(tmp_path: Path, *, expose_errors: bool = False) -> Starlette:
    async def start(request: Request) -> Response:
        tasks = BackgroundTasks(detach=True, on_error="continue")
        kind = request.path_params["kind"]
        if kind == "progress":
            go_on = str(tmp_path / "go on")
            task = tasks.add_task(process_tasks.report_progress_then_wait, go_on)
            task.set(executor="process")
        elif kind == "hang":
            task = tasks.add_task(process_tasks.spin_forever, str(tmp_path / "pid"))
            task.set(executor="process")
        else:
            task = tasks.add_task(process_tasks.fail, "the secret is hunter2")
        await tasks()
        return JSONResponse({"id": task.id}, status_code=202)

    return Starlette(
        routes=[
            Route("/start/{kind}", start, methods=["POST"]),
            Mount("/tasks", offload.status_app(expose_errors=expose_errors)),
        ],
        lifespan=offload.lifespan(offload.OffloadConfig(process_workers=1)),
    )


Status = dict[str, object]


def poll(client: httpx.Client, url: str, done: Callable[[Status], bool]) -> Status:
    """GET ``url`` until ``done`` holds for the status it answers (for 15 s at most)."""
    deadline = time.monotonic() + 15
    while True:
        body: Status = client.get(url).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def in_state(state: str) -> Callable[[Status], bool]:
    return lambda status: status["state"] == state


def test_progress_of_a_process_task_then_its_end(tmp_path: Path) -> None:
    with serve(make_app(tmp_path)) as base, httpx.Client(base_url=base) as client:
        task_id = client.post("/start/progress").json()["id"]
        running = poll(client, f"/tasks/{task_id}", lambda status: status["progress"] is not None)
        assert running["state"] == "running"
        assert running["progress"] == {"done": 5, "total": 7, "message": "halfway"}
        assert set(running) == {  # what a status shows: never the task's arguments
            *("id", "name", "executor", "state", "progress", "attempts", "error", "result"),
            *("created_at", "started_at", "ended_at"),
        }
        (tmp_path / "go on").touch()
        final = {"done": 7, "total": 7, "message": "done"}
        ended = poll(
            client,
            f"/tasks/{task_id}",
            lambda status: status["state"] == "succeeded" and status["progress"] == final,
        )
        assert (ended["state"], ended["progress"]) == ("succeeded", final)
        assert [status["id"] for status in client.get("/tasks/").json()] == [task_id]


def test_delete_cancels_a_running_task_then_says_it_has_ended(tmp_path: Path) -> None:
    with serve(make_app(tmp_path)) as base, httpx.Client(base_url=base) as client:
        task_id = client.post("/start/hang").json()["id"]
        poll(client, f"/tasks/{task_id}", in_state("running"))
        deleted = client.delete(f"/tasks/{task_id}")
        assert (deleted.status_code, deleted.json()) == (202, {"id": task_id, "state": "cancelled"})
        assert poll(client, f"/tasks/{task_id}", in_state("cancelled"))["state"] == "cancelled"
        assert client.delete(f"/tasks/{task_id}").status_code == 409


def test_unknown_ids_are_404_and_other_methods_405(tmp_path: Path) -> None:
    with serve(make_app(tmp_path)) as base, httpx.Client(base_url=base) as client:
        assert client.get("/tasks/" + "0" * 32).status_code == 404
        assert client.delete("/tasks/" + "0" * 32).status_code == 404
        refused = client.post("/tasks/")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


def test_errors_are_shown_only_when_asked(tmp_path: Path) -> None:
    for expose, shown in ((False, None), (True, "ValueError: the secret is hunter2")):
        app = make_app(tmp_path, expose_errors=expose)
        with serve(app) as base, httpx.Client(base_url=base) as client:
            task_id = client.post("/start/fail").json()["id"]
            failed = poll(client, f"/tasks/{task_id}", in_state("failed"))
            assert failed["error"] == shown
