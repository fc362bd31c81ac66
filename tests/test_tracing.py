"""offload.tracing with the real OpenTelemetry SDK: a span per task, with the right parent."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import offload
import offload.tracing
import process_tasks
from offload import BackgroundTasks, OffloadConfig, Runtime

pytestmark = pytest.mark.anyio


class Traced:
    """An SDK that keeps every finished span, and a tracer for the app's own spans."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    def spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    traced = Traced()
    hooks = offload.tracing.install(traced.provider)
    yield traced
    offload.remove_hooks(hooks)


async def noop() -> None:
    pass


attempts = 0


def fails_once() -> None:
    global attempts
    attempts += 1
    if attempts == 1:
        raise ValueError("first attempt")


def fails() -> None:
    raise ValueError("no")


async def test_each_task_runs_in_a_span_whose_parent_is_the_requests(traced: Traced) -> None:
    async with Runtime(OffloadConfig(process_workers=1)):
        with traced.tracer.start_as_current_span("request") as request:
            tasks = BackgroundTasks()
            tasks.add_task(noop)
            tasks.add_task(process_tasks.add, 1, 2).set(executor="thread")
            tasks.add_task(process_tasks.add, 1, 2).set(executor="process")
            await tasks()
    spans = traced.spans("offload.task")
    assert [span.attributes["offload.executor"] for span in spans] == [  # type: ignore[index]
        "inline",
        "thread",
        "process",
    ]
    for span, task in zip(spans, tasks.tasks, strict=True):
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.attributes == {
            "offload.task.name": task.name,
            "offload.task.id": task.id,
            "offload.executor": span.attributes["offload.executor"],  # type: ignore[index]
            "offload.attempts": 1,
            "offload.status": "succeeded",
        }
        assert span.status.status_code == StatusCode.UNSET


async def test_a_span_made_in_a_thread_task_is_a_child_of_its_task_span(traced: Traced) -> None:
    def in_a_thread() -> None:
        with traced.tracer.start_as_current_span("inside the task"):
            pass

    async with Runtime():
        await BackgroundTasks([in_a_thread])()
    (task_span,) = traced.spans("offload.task")
    (inner,) = traced.spans("inside the task")
    assert inner.parent is not None
    assert inner.parent.span_id == task_span.context.span_id


async def test_a_failure_marks_the_span_and_each_retry_is_an_event(traced: Traced) -> None:
    global attempts
    attempts = 0
    async with Runtime(OffloadConfig(retry_backoff=0)):
        tasks = BackgroundTasks(on_error="continue")
        tasks.add_task(fails_once).set(retries=1)
        tasks.add_task(fails)
        await tasks()
    retried, failed = traced.spans("offload.task")
    assert [event.name for event in retried.events] == ["offload.retry"]
    assert retried.events[0].attributes == {"offload.attempt": 2}
    assert retried.status.status_code == StatusCode.UNSET
    assert retried.attributes["offload.attempts"] == 2  # type: ignore[index]
    assert failed.status.status_code == StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]


async def test_a_detached_list_runs_under_the_span_it_was_scheduled_in(traced: Traced) -> None:
    async with Runtime():
        with traced.tracer.start_as_current_span("request") as request:
            tasks = BackgroundTasks(detach=True)
            tasks.add_task(noop)
            await tasks()
        with anyio.fail_after(10):
            while not traced.spans("offload.task"):  # noqa: ASYNC110 (the runtime's loop ends it)
                await anyio.sleep(0.01)
    (span,) = traced.spans("offload.task")
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id


async def test_tasks_without_a_span_around_start_traces_of_their_own(traced: Traced) -> None:
    async with Runtime():
        await BackgroundTasks([noop])()
    (span,) = traced.spans("offload.task")
    assert span.parent is None
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


async def test_a_process_task_runs_in_its_span_in_the_worker(traced: Traced) -> None:
    async with Runtime(OffloadConfig(process_workers=1)):
        tasks = BackgroundTasks(executor="process")
        task = tasks.add_task(process_tasks.current_trace_ids)
        await tasks()
        in_worker = offload.status(task.id).result  # type: ignore[union-attr]
    (span,) = traced.spans("offload.task")
    assert in_worker == (span.context.trace_id, span.context.span_id)


async def test_removed_tracing_sends_no_context_to_the_workers(traced: Traced) -> None:
    offload.remove_hooks(offload.tracing.install())  # the hooks the fixture installed
    async with Runtime(OffloadConfig(process_workers=1)):
        with traced.tracer.start_as_current_span("request"):
            tasks = BackgroundTasks(executor="process")
            task = tasks.add_task(process_tasks.current_trace_ids)
            await tasks()
        assert offload.status(task.id).result == (0, 0)  # type: ignore[union-attr]
    assert traced.spans("offload.task") == []


async def test_a_task_on_a_pool_of_the_apps_own_runs_in_its_span(traced: Traced) -> None:
    # Needs the process executor (a ProcessPoolExecutor of the app's).
    thread_pool = ThreadPoolExecutor(1)
    process_pool = ProcessPoolExecutor(1)
    offload.register_executor("threads", lambda config: offload.PoolExecutor(thread_pool))
    offload.register_executor("processes", lambda config: offload.PoolExecutor(process_pool))
    try:
        async with Runtime():
            tasks = BackgroundTasks()
            in_thread = tasks.add_task(process_tasks.current_trace_ids).set(executor="threads")
            in_process = tasks.add_task(process_tasks.current_trace_ids).set(executor="processes")
            await tasks()
            seen = [offload.status(task.id).result for task in (in_thread, in_process)]  # type: ignore[union-attr]
    finally:
        thread_pool.shutdown()
        process_pool.shutdown()
    spans = traced.spans("offload.task")
    assert seen == [(span.context.trace_id, span.context.span_id) for span in spans]


async def test_installing_with_another_provider_replaces_the_hooks(traced: Traced) -> None:
    other = Traced()
    offload.tracing.install(other.provider)
    async with Runtime():
        await BackgroundTasks([noop])()
    assert traced.spans("offload.task") == []
    assert len(other.spans("offload.task")) == 1


async def sleep_long() -> None:
    await anyio.sleep(10)


async def test_a_group_cut_short_from_outside_ends_each_span_where_it_began(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime():
        with anyio.move_on_after(0.2):  # a request cancelled, a server's graceful timeout
            await BackgroundTasks([sleep_long, sleep_long], concurrency="group")()
    spans = traced.spans("offload.task")
    assert [span.attributes["offload.attempts"] for span in spans] == [1, 1]  # type: ignore[index]
    assert [span.attributes["offload.status"] for span in spans] == ["skipped"] * 2  # type: ignore[index]
    assert "Failed to detach context" not in caplog.text
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_one_task_object_run_by_two_requests_at_once_gets_a_span_in_each(
    traced: Traced,
) -> None:
    shared = offload.BackgroundTask(anyio.sleep, 0.1)  # as a module-level task would be
    requests: dict[str, int] = {}

    async def request(name: str) -> None:
        with traced.tracer.start_as_current_span(name) as span:
            requests[name] = span.get_span_context().span_id
            await BackgroundTasks([shared])()
            assert trace.get_current_span() is span  # nothing of the task's left attached

    async with Runtime(), anyio.create_task_group() as group:
        group.start_soon(request, "a")
        group.start_soon(request, "b")
    spans = traced.spans("offload.task")
    assert sorted(span.parent.span_id for span in spans if span.parent) == sorted(requests.values())
