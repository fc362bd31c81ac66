"""offload in Litestar apps: its pre-mixed responses (``Response[T]`` stays generic),
Litestar's own task objects unpacked to their functions, its group flag kept, handler-level
``background=``; served by uvicorn on 127.0.0.1, and through Litestar's test client on asyncio
and trio."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast, get_origin

import anyio
import httpx
import pytest
from litestar import Litestar, get, post
from litestar import response as litestar_responses
from litestar.background_tasks import BackgroundTask as LitestarTask
from litestar.background_tasks import BackgroundTasks as LitestarTasks
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.testing import TestClient
from litestar.types import AnyIOBackend
from litestar_tasks import Barrier, wait_for, write_mark, write_mark_async, write_pid

import offload
from offload import BackgroundTask, OffloadConfig, TaskReport
from offload.litestar import (
    BackgroundTasks,
    File,
    Redirect,
    Response,
    ServerSentEvent,
    Stream,
    Template,
)

# tests/ is on sys.path (its conftest's folder); mypy, run on this file alone, does not see it.
from servers import serve  # type: ignore[import-not-found, unused-ignore]
from test_docs import python_samples, run_sample  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).parents[2]

#: Litestar's test client runs the app on either of anyio's backends; uvicorn only on asyncio.
BACKENDS: list[AnyIOBackend] = ["asyncio", "trio"]


def wait_until(condition: Callable[[], bool], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        time.sleep(0.01)


# --- Response[T] stays generic ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_handler_annotated_with_the_generic_response_loads_and_answers(
    backend: AnyIOBackend, tmp_path: Path
) -> None:
    mark = tmp_path / "mark"

    @get("/", sync_to_thread=False)
    def greet() -> Response[dict[str, str]]:
        return Response(
            {"hello": "world"}, backgrounds=[BackgroundTask(write_mark, str(mark), "ran")]
        )

    app = Litestar([greet])  # resolves the return annotation, which a non-generic class fails
    schema = app.openapi_schema.to_schema()["paths"]["/"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["type"] == "object"
    with TestClient(app, backend=backend) as client:
        assert client.get("/").json() == {"hello": "world"}
    assert mark.read_text() == "ran"


def test_the_response_is_generic_like_litestars() -> None:
    assert get_origin(Response[dict[str, str]]) is Response
    assert issubclass(Response, litestar_responses.Response)
    response: Response[list[int]] = Response([1, 2], status_code=201)
    assert (response.content, response.status_code, response.background) == ([1, 2], 201, None)


# --- every response class that takes background= -------------------------------------------


MakeResponse = Callable[[list[object]], litestar_responses.Response[Any]]


def _responses(tmp_path: Path) -> dict[str, MakeResponse]:
    """Each of offload.litestar's responses, made with offload's ``backgrounds=``."""
    page = tmp_path / "page.txt"
    page.write_text("a file")

    def numbers() -> Iterator[str]:
        yield from ("1", "2")

    return {
        "Response": lambda tasks: Response("text", backgrounds=tasks, media_type="text/plain"),
        "Redirect": lambda tasks: Redirect("/elsewhere", backgrounds=tasks),
        "File": lambda tasks: File(page, backgrounds=tasks),
        "Stream": lambda tasks: Stream(numbers(), backgrounds=tasks),
        "ServerSentEvent": lambda tasks: ServerSentEvent(numbers(), backgrounds=tasks),
        "Template": lambda tasks: Template(
            template_str="{{ n }}", context={"n": 1}, backgrounds=tasks
        ),
    }


RESPONSE_CLASSES = ["Response", "Redirect", "File", "Stream", "ServerSentEvent", "Template"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", RESPONSE_CLASSES)
def test_each_response_runs_its_backgrounds_through_offload(
    kind: str, backend: AnyIOBackend, tmp_path: Path
) -> None:
    made = _responses(tmp_path)[kind]
    sync_mark, async_mark = tmp_path / "sync", tmp_path / "async"
    responses: list[litestar_responses.Response[Any]] = []

    @get("/", sync_to_thread=False)
    def endpoint() -> litestar_responses.Response[Any]:
        response = made(
            [
                BackgroundTask(write_mark, str(sync_mark), kind),
                LitestarTask(write_mark_async, str(async_mark), kind),
            ]
        )
        responses.append(response)
        return response

    template_config = TemplateConfig(engine=JinjaTemplateEngine, directory=tmp_path)
    app = Litestar([endpoint], template_config=template_config)
    with TestClient(app, backend=backend) as client:
        answer = client.get("/", follow_redirects=False)
    assert answer.status_code < 400, answer.text
    (response,) = responses
    assert isinstance(response, getattr(litestar_responses, kind))
    assert isinstance(response.background, offload.BackgroundTasks)
    reports = response.background.reports
    assert [(r.name, r.executor, r.status) for r in reports] == [
        ("write_mark", "thread", "succeeded"),
        ("write_mark_async", "inline", "succeeded"),
    ]
    assert sync_mark.read_text() == async_mark.read_text() == kind


@pytest.mark.anyio
async def test_the_responses_take_the_mixins_arguments() -> None:
    def chooser(task: offload.BackgroundTask) -> str:
        return "inline"

    async with offload.Runtime():  # detach=True hands the list to a running runtime
        response = Response(
            {"ok": True},
            backgrounds=[BackgroundTask(write_mark, "unused", "")],
            executor=chooser,
            on_error="continue",
            concurrency="group",
            detach=True,
        )
        tasks = response.background
        assert isinstance(tasks, offload.BackgroundTasks)
        assert (tasks.on_error, tasks.concurrency, tasks.detach) == ("continue", "group", True)
        assert tasks.tasks[0].runs_on == "inline"
        tasks.detach = False  # leave the runtime with nothing to run


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_detached_list_runs_on_the_apps_runtime(backend: AnyIOBackend, tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    responses: list[Response[str]] = []

    @get("/", sync_to_thread=False)
    def endpoint() -> Response[str]:
        task = LitestarTask(write_mark_async, str(mark), "detached")
        responses.append(Response("ok", backgrounds=[task], detach=True))
        return responses[-1]

    app = Litestar([endpoint], lifespan=[offload.lifespan()])
    with TestClient(app, backend=backend) as client:
        assert client.get("/").text == "ok"
        wait_until(mark.exists, "the detached task")
    assert responses[0].background.detach
    assert mark.read_text() == "detached"


def test_a_background_given_as_well_runs_first() -> None:
    first = LitestarTask(write_mark, "first", "")
    response = Response("", background=first, backgrounds=[BackgroundTask(write_pid, "then")])
    assert [task.name for task in response.background.tasks] == ["write_mark", "write_pid"]


# --- Litestar's own task objects, unpacked ----------------------------------------------------


def test_litestars_tasks_become_offload_tasks_of_their_functions() -> None:
    seen: list[object] = []

    def chooser(task: offload.BackgroundTask) -> str | None:
        seen.append(task.func)
        return None

    response = Response(
        "",
        backgrounds=[
            LitestarTask(write_mark, "a path", text="sync"),  # Litestar wraps it for a thread
            LitestarTask(write_mark_async, "a path", "async"),
        ],
        executor=chooser,
    )
    tasks = response.background.tasks
    assert [(t.func, t.args, t.kwargs) for t in tasks] == [
        (write_mark, ("a path",), {"text": "sync"}),
        (write_mark_async, ("a path", "async"), {}),
    ]
    assert seen == [write_mark, write_mark_async]
    assert [t.name for t in tasks] == ["write_mark", "write_mark_async"]


def test_a_litestar_task_goes_to_a_worker_process_as_its_function(tmp_path: Path) -> None:
    mark = tmp_path / "pid"
    response = Response("", backgrounds=[LitestarTask(write_pid, str(mark))], executor="process")
    (task,) = response.background.tasks
    assert task.func is write_pid
    assert task.payload is not None  # pickled here, by reference to the function
    anyio.run(response.background)
    assert int(mark.read_text()) != os.getpid()
    assert response.background.reports[0].executor == "process"


@pytest.mark.anyio
async def test_a_litestar_task_whose_class_overrides_call_runs_whole() -> None:
    calls: list[str] = []

    class Audited(LitestarTask):
        async def __call__(self) -> None:
            calls.append("audited")
            await super().__call__()

    def work() -> None:
        calls.append("work")

    response = Response("", backgrounds=[Audited(work)])
    await response.background()
    assert calls == ["audited", "work"]
    assert response.background.reports[0].name.endswith("Audited")  # its class's name


# --- run_in_task_group ------------------------------------------------------------------------


def _waiters(barrier: Barrier, count: int) -> list[LitestarTask]:
    return [LitestarTask(barrier.wait) for _ in range(count)]


@pytest.mark.anyio
async def test_a_litestar_list_run_in_a_task_group_runs_its_tasks_at_once() -> None:
    barrier = Barrier(3)
    response = Response("", background=LitestarTasks(_waiters(barrier, 3), run_in_task_group=True))
    assert response.background.concurrency == "group"
    await response.background()  # one by one, the first would time out at the barrier
    assert [r.status for r in response.background.reports] == ["succeeded"] * 3


@pytest.mark.anyio
@pytest.mark.parametrize("task_list", [LitestarTasks, BackgroundTasks], ids=["litestar", "offload"])
async def test_the_group_flag_holds_inside_backgrounds_too(
    task_list: type[LitestarTasks | BackgroundTasks],
) -> None:
    barrier = Barrier(3)
    group = task_list(_waiters(barrier, 2), run_in_task_group=True)
    response = Response("", backgrounds=[group, LitestarTask(barrier.wait)])
    assert response.background.concurrency == "group"  # the task beside the list too
    await response.background()
    assert barrier.arrived == 3


@pytest.mark.anyio
async def test_the_responses_own_concurrency_wins_over_the_group_flag() -> None:
    order: list[str] = []

    async def slow() -> None:
        await anyio.sleep(0.05)
        order.append("slow")

    async def fast() -> None:
        order.append("fast")

    group = LitestarTasks([LitestarTask(slow), LitestarTask(fast)], run_in_task_group=True)
    response = Response("", background=group, concurrency="sequential")
    await response.background()
    assert order == ["slow", "fast"]


# --- offload.litestar.BackgroundTasks: where Litestar takes only its own -----------------------


def test_offloads_list_is_litestars_too() -> None:
    tasks = BackgroundTasks([LitestarTask(write_mark, "a path", "")], run_in_task_group=True)
    assert isinstance(tasks, LitestarTasks)
    assert isinstance(tasks, offload.BackgroundTasks)
    assert (tasks.concurrency, tasks.run_in_task_group) == ("group", True)
    assert tasks.tasks[0].func is write_mark
    sequential = BackgroundTasks([], run_in_task_group=True, concurrency="sequential")
    assert (sequential.concurrency, sequential.run_in_task_group) == ("sequential", False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_handler_level_offload_list_runs_through_offload(
    backend: AnyIOBackend, tmp_path: Path
) -> None:
    marks = [tmp_path / "a", tmp_path / "b"]
    tasks = BackgroundTasks(
        [
            LitestarTask(write_mark, str(marks[0]), "a"),
            BackgroundTask(write_mark_async, str(marks[1]), "b"),
        ],
        run_in_task_group=True,
    )

    # The decorator is typed to take Litestar's lists: mypy checks this line.
    @get("/", background=tasks, sync_to_thread=False)
    def handler() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(Litestar([handler]), backend=backend) as client:
        assert client.get("/").json() == {"ok": "yes"}
    assert [(r.name, r.executor, r.status) for r in tasks.reports] == [
        ("write_mark", "thread", "succeeded"),
        ("write_mark_async", "inline", "succeeded"),
    ]
    assert [mark.read_text() for mark in marks] == ["a", "b"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_offloads_response_class_litestars_handler_tasks_run_through_offload(
    backend: AnyIOBackend, tmp_path: Path
) -> None:
    reports: list[TaskReport] = []
    mark = tmp_path / "mark"

    @get("/", background=LitestarTask(write_mark, str(mark), "handler"), sync_to_thread=False)
    def handler() -> dict[str, str]:
        return {"ok": "yes"}

    app = Litestar(
        [handler],
        response_class=Response,
        lifespan=[offload.lifespan(OffloadConfig(on_report=reports.append))],
    )
    with TestClient(app, backend=backend) as client:
        assert client.get("/").json() == {"ok": "yes"}
        assert client.get("/").json() == {"ok": "yes"}
    assert mark.read_text() == "handler"
    assert [(r.name, r.executor, r.status) for r in reports] == [
        ("write_mark", "thread", "succeeded")
    ] * 2


# --- a real server -----------------------------------------------------------------------------


def test_a_litestar_app_on_uvicorn_runs_sync_async_and_process_tasks(tmp_path: Path) -> None:
    # uvicorn runs on asyncio only; trio is covered above, through Litestar's test client.
    reports: list[TaskReport] = []
    released = threading.Event()
    marks = {name: tmp_path / name for name in ("released", "sync", "async", "process")}

    def to_process(task: offload.BackgroundTask) -> str | None:
        return "process" if task.func is write_pid else None  # it sees the function

    @post("/orders/{order_id:int}")
    async def create_order(order_id: FromPath[int]) -> Response[dict[str, int]]:
        return Response(
            {"order": order_id},
            backgrounds=[
                BackgroundTask(wait_for, released, str(marks["released"])),
                LitestarTask(write_mark, str(marks["sync"]), f"order {order_id}"),
                BackgroundTask(write_mark_async, str(marks["async"]), f"order {order_id}"),
                LitestarTask(write_pid, str(marks["process"])),
            ],
            executor=to_process,
        )

    config = OffloadConfig(process_workers=1, on_report=reports.append)
    app = Litestar([create_order], lifespan=[offload.lifespan(config)])
    # Any: Litestar types ASGI messages as TypedDicts, serve() as plain mappings.
    asgi_app = cast(Any, app)
    try:
        with serve(asgi_app) as url, httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post("/orders/7")
            # The whole body is here while the first task still waits: it runs after sending.
            assert (answer.status_code, answer.json()) == (201, {"order": 7})
            assert not any(mark.exists() for mark in marks.values())
            released.set()
            wait_until(lambda: all(mark.exists() for mark in marks.values()), "every task")
    finally:
        released.set()
    assert marks["sync"].read_text() == marks["async"].read_text() == "order 7"
    assert int(marks["process"].read_text()) != os.getpid()  # the server's pid: same process
    assert [(r.name, r.executor, r.status) for r in reports] == [
        ("wait_for", "thread", "succeeded"),
        ("write_mark", "thread", "succeeded"),
        ("write_mark_async", "inline", "succeeded"),
        ("write_pid", "process", "succeeded"),
    ]


# --- the example and the docs page -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _put_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:  # ends when the process and its children have closed the pipe
        lines.put(line.strip())


def _first_lines(lines: queue.Queue[str], count: int, within: float) -> list[str]:
    printed: list[str] = []
    deadline = time.monotonic() + within
    while len(printed) < count:
        try:
            printed.append(lines.get(timeout=max(deadline - time.monotonic(), 0)))
        except queue.Empty:
            raise AssertionError(f"the example printed only {printed}") from None
    return printed


def test_the_example_app_serves_and_runs_its_tasks() -> None:
    port = _free_port()
    # A fresh interpreter, as users run it, so its worker processes import the example.
    code = (
        "import sys, uvicorn; sys.path.insert(0, 'examples'); from litestar_app import app; "
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    # Read in a thread, so that waiting for a line keeps its bound.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_put_lines, args=(server.stdout, lines), daemon=True)
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "the example server exited"
            try:
                answer = httpx.post(f"{url}/reports/42", timeout=30)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the example server did not start"
                time.sleep(0.05)
        assert answer.json() == {"report": 42, "status": "accepted"}
        printed = _first_lines(lines, count=3, within=30)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # its worker processes end with it: offload's guarantee
            server.wait()
            raise
        finally:
            reader.join(timeout=10)
            server.stdout.close()
    assert printed[0] == "report 42: audit logged"
    assert printed[1].startswith("report 42 rendered in process ")
    assert int(printed[1].rsplit(" ", 1)[1]) != server.pid
    assert printed[2] == "report 42: notification sent"


def test_the_samples_of_the_docs_page_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As tests/test_docs.py runs the main pages: in order, in one namespace; a titled sample
    # is a module, which worker processes import from tmp_path.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # A module of its own: Litestar reads a handler's annotations through its module.
    module = types.ModuleType("litestar_docs_sample")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    apps = 0
    for sample in python_samples(ROOT / "docs" / "frameworks" / "litestar.md"):
        if sample.title:
            (tmp_path / sample.title).write_text(sample.code)
            continue
        namespace.pop("app", None)
        run_sample(sample, namespace)
        app = namespace.get("app")
        if not isinstance(app, Litestar):
            continue
        apps += 1
        with TestClient(app) as client:
            # The page's routes are POSTs; the others are Litestar's OpenAPI schema.
            for route in app.routes:
                if "POST" in route.methods:
                    answer = client.post(route.path, params={"email": "ada@x.org"})
                    assert answer.status_code == 201, f"{sample}: {answer.text}"
        printed = capsys.readouterr().out
        assert "ada@x.org" in printed, f"{sample}: no task ran"
    assert apps == 4
