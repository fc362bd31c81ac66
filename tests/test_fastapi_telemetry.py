"""Under FastAPI's own telemetry, each offload task gets its ``fastapi.background_task`` span."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run
# time, and those of endpoints defined inside a test name the test's local dependencies.

import threading
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from fastapi import BackgroundTasks as FastAPIBackgroundTasks
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig, get_telemetry_data
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import offload
import offload.fastapi
import offload.tracing
import process_tasks
from offload import BackgroundTask, OffloadConfig
from offload.fastapi import Backgrounds
from offload.starlette import JSONResponse


class Telemetry:
    """FastAPI's telemetry settings, with an SDK that keeps every finished span."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.config: TelemetryConfig = {"tracer_provider": self.provider, "metrics": False}

    def spans(self, name: str = "fastapi.background_task") -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]

    def server(self) -> ReadableSpan:
        (server,) = [s for s in self.exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
        return server


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.provider.shutdown()


@pytest.fixture(autouse=True)
def _fastapi_hooks_on() -> None:
    """offload.fastapi adds its hooks when imported; another test may have removed them."""
    offload.add_hooks(offload.fastapi.telemetry_hooks)


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Literal["asyncio", "trio"]:
    return request.param  # type: ignore[no-any-return]


def seen_in_task(label: str, seen: list[tuple[str, Any, str | None, int]]) -> None:
    """Record, from inside a task, its current span and the request's telemetry data."""
    span = trace.get_current_span()
    data = get_telemetry_data()
    path = None if data is None or data.request is None else data.request.url.path
    seen.append((label, span.get_span_context(), path, threading.get_ident()))


async def seen_in_async_task(label: str, seen: list[tuple[str, Any, str | None, int]]) -> None:
    seen_in_task(label, seen)


def test_each_task_gets_its_own_span_current_while_it_runs(
    telemetry: Telemetry, backend: Literal["asyncio", "trio"]
) -> None:
    app = FastAPI(telemetry=telemetry.config)
    seen: list[tuple[str, Any, str | None, int]] = []
    endpoint_thread: list[int] = []

    @app.get("/items/{item_id}")
    async def endpoint(item_id: int, tasks: Backgrounds) -> dict[str, int]:
        endpoint_thread.append(threading.get_ident())
        tasks.add_task(seen_in_async_task, "inline", seen)
        tasks.add_task(seen_in_task, "thread", seen)
        return {"item_id": item_id}

    with TestClient(app, backend=backend) as client:
        assert client.get("/items/42").json() == {"item_id": 42}
    server = telemetry.server()
    spans = telemetry.spans()
    assert len(spans) == 2  # one a task, and none for offload's own runner
    for span, task, (label, context, path, thread) in zip(
        spans, (seen_in_async_task, seen_in_task), seen, strict=True
    ):
        assert span.kind == SpanKind.INTERNAL
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert span.attributes == {"code.function.name": f"{__name__}.{task.__qualname__}"}
        assert span.status.status_code == StatusCode.UNSET
        assert span.start_time is not None
        assert server.end_time is not None
        assert span.start_time >= server.end_time  # after the response
        assert context.span_id == span.context.span_id  # current inside the task
        assert path == "/items/42"  # FastAPI's data, inside the task
        assert (thread != endpoint_thread[0]) == (label == "thread")


def test_a_failing_task_ends_its_span_with_an_error(telemetry: Telemetry) -> None:
    app = FastAPI(telemetry=telemetry.config)
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(process_tasks.fail, "boom").set(executor="thread")
        tasks.add_task(ran.append, "after")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 200
    assert ran == []  # the default policy stops at the first failure
    (span,) = telemetry.spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ValueError"


def test_a_task_tried_again_has_one_span_for_all_its_attempts(telemetry: Telemetry) -> None:
    app = FastAPI(telemetry=telemetry.config)
    attempts: list[int] = []

    def fails_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first attempt")

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(fails_once).set(retries=1)

    offload.configure(OffloadConfig(retry_backoff=0.0))
    with TestClient(app) as client:
        client.get("/")
    assert len(attempts) == 2
    (span,) = telemetry.spans()
    assert span.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize("tracing_first", [False, True])
def test_a_process_task_gets_its_span_and_its_spans_join_the_trace(
    telemetry: Telemetry, tracing_first: bool
) -> None:
    # Needs the process executor. offload.tracing sends the context along to the worker;
    # whichever hooks came first, FastAPI's span is the request span's child.
    offload.tracing.install(telemetry.provider)
    if tracing_first:
        offload.remove_hooks(offload.fastapi.telemetry_hooks)
        offload.add_hooks(offload.fastapi.telemetry_hooks)
    app = FastAPI(telemetry=telemetry.config)
    ids: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        task = tasks.add_task(process_tasks.current_trace_ids).set(executor="process")
        ids.append(task.id)

    with TestClient(app) as client:
        client.get("/")
        status = offload.status(ids[0])
    assert status is not None
    assert status.state == "succeeded"
    server = telemetry.server()
    (span,) = telemetry.spans()
    assert span.attributes == {"code.function.name": "process_tasks.current_trace_ids"}
    assert span.parent is not None
    assert span.parent.span_id == server.context.span_id
    trace_id, _ = status.result
    assert trace_id == server.context.trace_id
    (offload_span,) = telemetry.spans("offload.task")
    assert offload_span.parent is not None
    assert offload_span.parent.span_id == server.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


def test_a_plain_offload_list_as_the_responses_background_gets_spans(
    telemetry: Telemetry,
) -> None:
    app = FastAPI(telemetry=telemetry.config)
    ran: list[str] = []

    @app.get("/")
    async def endpoint() -> JSONResponse:
        return JSONResponse({}, backgrounds=[BackgroundTask(ran.append, "response task")])

    with TestClient(app) as client:
        client.get("/")
    assert ran == ["response task"]
    (span,) = telemetry.spans()
    assert span.parent is not None
    assert span.parent.span_id == telemetry.server().context.span_id


@pytest.mark.parametrize("setting", ["operation_spans", "tracing"])
def test_fastapis_settings_turn_the_spans_off(telemetry: Telemetry, setting: str) -> None:
    telemetry.config[setting] = False  # type: ignore[literal-required]
    app = FastAPI(telemetry=telemetry.config)
    ran: list[str] = []

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(ran.append, "done")

    with TestClient(app) as client:
        client.get("/")
    assert ran == ["done"]
    assert telemetry.spans() == []


def test_a_detached_list_gets_spans_under_the_request(telemetry: Telemetry) -> None:
    app = FastAPI(telemetry=telemetry.config, lifespan=offload.lifespan(OffloadConfig(detach=True)))
    done = threading.Event()

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(done.set)

    with TestClient(app) as client:
        client.get("/")
        assert done.wait(10)
    (span,) = telemetry.spans()
    assert span.parent is not None
    assert span.parent.span_id == telemetry.server().context.span_id


def test_fastapis_own_tasks_and_offloads_each_get_one_span(telemetry: Telemetry) -> None:
    app = FastAPI(telemetry=telemetry.config)
    ran: list[str] = []

    def own(label: str) -> None:
        ran.append(label)

    @app.get("/")
    async def endpoint(tasks: Backgrounds, fastapi_tasks: FastAPIBackgroundTasks) -> None:
        fastapi_tasks.add_task(own, "fastapi")
        tasks.add_task(own, "offload")

    with TestClient(app) as client:
        client.get("/")
    assert sorted(ran) == ["fastapi", "offload"]
    names = sorted(str((s.attributes or {})["code.function.name"]) for s in telemetry.spans())
    assert names == [f"{__name__}.{own.__qualname__}"] * 2  # none for offload's runner


def test_a_span_made_inside_a_task_is_a_child_of_offloads_whichever_came_first(
    telemetry: Telemetry,
) -> None:
    # offload.tracing installed before offload.fastapi's hooks were added: same shape.
    offload.remove_hooks(offload.fastapi.telemetry_hooks)
    offload.tracing.install(telemetry.provider)
    offload.add_hooks(offload.fastapi.telemetry_hooks)
    app = FastAPI(telemetry=telemetry.config)
    tracer = telemetry.provider.get_tracer("app")

    def work() -> None:
        with tracer.start_as_current_span("inside"):
            pass

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(work)

    with TestClient(app) as client:
        client.get("/")
    server = telemetry.server()
    (fastapi_span,) = telemetry.spans()
    (offload_span,) = telemetry.spans("offload.task")
    (inside,) = telemetry.spans("inside")
    assert fastapi_span.parent is not None
    assert offload_span.parent is not None
    assert fastapi_span.parent.span_id == offload_span.parent.span_id == server.context.span_id
    assert inside.parent is not None
    assert inside.parent.span_id == offload_span.context.span_id


def test_removed_hooks_stay_removed(telemetry: Telemetry) -> None:
    offload.remove_hooks(offload.fastapi.telemetry_hooks)
    app = FastAPI(telemetry=telemetry.config)

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> None:
        tasks.add_task(print, end="")

    with TestClient(app) as client:
        client.get("/")
        client.get("/")
    assert telemetry.spans() == []
