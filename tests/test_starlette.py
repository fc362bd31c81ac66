"""offload.starlette: each of Starlette's responses with the mixin, in a Starlette app."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette import responses as starlette_responses
from starlette.applications import Starlette
from starlette.background import BackgroundTask as StarletteTask
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import offload.starlette
from offload import (
    BackgroundTask,
    Call,
    InlineExecutor,
    NotPicklable,
    OffloadConfig,
    TaskReport,
    configure,
)
from offload._config import OnError
from offload.starlette import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from servers import SENT, call_once, post_to_example


def chunks() -> Iterator[bytes]:
    yield b"str"
    yield b"eam"


#: How to build each response class with ``backgrounds``, and the body a client gets.
MAKERS: dict[str, tuple[Callable[[Path, list[object]], StarletteResponse], bytes]] = {
    "Response": (lambda path, bg: Response(b"raw", backgrounds=bg), b"raw"),
    "PlainTextResponse": (lambda path, bg: PlainTextResponse("text", backgrounds=bg), b"text"),
    "HTMLResponse": (lambda path, bg: HTMLResponse("<p>html</p>", backgrounds=bg), b"<p>html</p>"),
    "JSONResponse": (lambda path, bg: JSONResponse({"ok": True}, backgrounds=bg), b'{"ok":true}'),
    "RedirectResponse": (lambda path, bg: RedirectResponse("/elsewhere", backgrounds=bg), b""),
    "StreamingResponse": (lambda path, bg: StreamingResponse(chunks(), backgrounds=bg), b"stream"),
    "FileResponse": (lambda path, bg: FileResponse(path, backgrounds=bg), b"file contents"),
}


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "download.txt"
    path.write_bytes(b"file contents")
    return path


@pytest.mark.parametrize("name", MAKERS)
def test_each_class_is_starlettes_own(name: str) -> None:
    ours = getattr(offload.starlette, name)
    assert issubclass(ours, getattr(starlette_responses, name))
    assert ours.__name__ == name


@pytest.mark.anyio
@pytest.mark.parametrize("name", MAKERS)
async def test_each_class_runs_its_tasks_after_the_response_is_sent(
    name: str, a_file: Path
) -> None:
    events: list[str] = []
    make, _ = MAKERS[name]
    response = make(a_file, [BackgroundTask(events.append, "first"), lambda: events.append("2nd")])
    await call_once(response, events)
    assert events == [SENT, "first", "2nd"]


@pytest.mark.parametrize("name", MAKERS)
def test_each_class_serves_its_body_and_runs_its_tasks_in_an_app(name: str, a_file: Path) -> None:
    reports: list[TaskReport] = []
    configure(OffloadConfig(on_report=reports.append))
    ran = threading.Event()
    make, body = MAKERS[name]

    def endpoint(request: Request) -> StarletteResponse:
        return make(a_file, [BackgroundTask(ran.set).set(name="after")])

    with TestClient(Starlette(routes=[Route("/", endpoint)]), follow_redirects=False) as client:
        response = client.get("/")
    assert response.content == body
    assert ran.is_set()
    assert [(r.name, r.status) for r in reports] == [("after", "succeeded")]


def test_starlettes_own_background_argument_is_merged_first() -> None:
    ran: list[str] = []

    def endpoint(request: Request) -> StarletteResponse:
        return JSONResponse(
            {},
            background=StarletteTask(ran.append, "starlette"),
            backgrounds=[BackgroundTask(ran.append, "offload")],
        )

    with TestClient(Starlette(routes=[Route("/", endpoint)])) as client:
        assert client.get("/").status_code == 200
    assert ran == ["starlette", "offload"]


class TaskFailed(Exception):
    pass


def fail() -> None:
    raise TaskFailed("boom")


@pytest.mark.parametrize("policy", ["raise", "stop", "continue", "collect"])
def test_a_failing_task_leaves_the_response_intact(
    policy: OnError, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def endpoint(request: Request) -> StarletteResponse:
        return JSONResponse(
            {"ok": True}, backgrounds=[fail, lambda: ran.append("next")], on_error=policy
        )

    app = Starlette(routes=[Route("/", endpoint)])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.json() == {"ok": True}
    assert ran == ([] if policy in ("raise", "stop") else ["next"])
    [record] = [r for r in caplog.records if r.name == "offload"]
    assert record.exc_info is not None
    assert record.exc_info[0] is TaskFailed


@pytest.mark.parametrize(("policy", "raised"), [("raise", TaskFailed), ("collect", ExceptionGroup)])
def test_raise_and_collect_reach_the_server_like_starlettes_tasks(
    policy: OnError, raised: type[Exception]
) -> None:
    def endpoint(request: Request) -> StarletteResponse:
        return JSONResponse({}, backgrounds=[fail], on_error=policy)

    with TestClient(Starlette(routes=[Route("/", endpoint)])) as client, pytest.raises(raised):
        client.get("/")


class Unpicklable:
    def __reduce__(self) -> str:
        raise TypeError("cannot pickle Unpicklable objects")


def record(value: object) -> None:
    pass


class PicklingExecutor(InlineExecutor):
    """Refuses every task at prepare time, as the process executor refuses unpicklable ones."""

    def prepare(self, task: Call) -> None:
        raise NotPicklable(f"cannot pickle task {task.name!r}")


def test_a_task_refused_at_prepare_fails_the_endpoint_with_a_500() -> None:
    ran: list[str] = []

    def endpoint(request: Request) -> StarletteResponse:
        return JSONResponse(
            {}, backgrounds=[lambda: ran.append("ran")], executor=PicklingExecutor()
        )

    app = Starlette(routes=[Route("/", endpoint)])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500
    assert ran == []


# Needs the process executor.
@pytest.mark.parametrize(
    "task",
    [lambda: BackgroundTask(lambda: None), lambda: BackgroundTask(record, Unpicklable())],
    ids=["lambda", "unpicklable argument"],
)
def test_an_unpicklable_process_task_fails_the_endpoint_with_a_500(
    task: Callable[[], BackgroundTask],
) -> None:
    def endpoint(request: Request) -> StarletteResponse:
        return JSONResponse({"ok": True}, backgrounds=[task()], executor="process")

    app = Starlette(routes=[Route("/", endpoint)])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500
    with TestClient(app) as client, pytest.raises(NotPicklable):
        client.get("/")


def test_without_starlette_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "starlette"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "offload.starlette")
    with pytest.raises(
        ImportError, match=r"'starlette' extra: pip install \"offload\[starlette\]\""
    ):
        importlib.import_module("offload.starlette")


def test_the_example_app_works_as_pasted() -> None:
    # Needs the process executor.
    printed = post_to_example("starlette_app", "/reports/42")
    assert printed.splitlines() == [
        "report 42 rendered: 1f791304cd53f282",
        "report 42: notification sent",
        '200 {"report":42,"status":"accepted"}',
    ]
