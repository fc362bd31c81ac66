"""examples/fastapi_progress.py, served by uvicorn: 202, progress from a worker, result, cancel."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from servers import EXAMPLES, serve

Status = dict[str, object]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    sys.path.insert(0, str(EXAMPLES))  # the worker processes import the example by name
    try:
        from fastapi_progress import app

        with serve(app) as base, httpx.Client(base_url=base) as client:
            yield client
    finally:
        sys.path.remove(str(EXAMPLES))


def poll(client: httpx.Client, url: str, done: Callable[[Status], bool]) -> list[Status]:
    """GET ``url`` until ``done`` holds (60 s at most); return every status seen."""
    seen: list[Status] = []
    deadline = time.monotonic() + 60
    while not seen or not (done(seen[-1]) or time.monotonic() > deadline):
        seen.append(client.get(url).json())
        time.sleep(0.01)
    return seen


def test_progress_rises_to_the_total_then_the_result_shows(client: httpx.Client) -> None:
    started = client.post("/reports/30")
    assert started.status_code == 202
    task_id = started.json()["id"]
    final = {"done": 30, "total": 30, "message": "page 30 of 30"}
    seen = poll(
        client,
        f"/tasks/{task_id}",
        lambda status: status["state"] == "succeeded" and status["progress"] == final,
    )
    progress = [status["progress"] for status in seen if status["state"] == "running"]
    done = [step["done"] for step in progress if isinstance(step, dict)]
    assert done, "no progress was seen while the task ran"
    assert done == sorted(done)
    assert min(done) < 30  # seen part-way, while the worker process still ran
    assert seen[-1]["progress"] == final
    result = seen[-1]["result"]
    assert isinstance(result, dict)
    assert result["pages"] == 30


def test_delete_cancels_the_report(client: httpx.Client) -> None:
    task_id = client.post("/reports/100000").json()["id"]
    poll(client, f"/tasks/{task_id}", lambda status: status["progress"] is not None)
    assert client.delete(f"/tasks/{task_id}").status_code == 202
    final = poll(client, f"/tasks/{task_id}", lambda status: status["state"] != "running")
    assert final[-1]["state"] == "cancelled"
