"""Detached task lists: handed to the running Runtime, apart from the request; backpressure."""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
import time
from collections.abc import Callable

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

import offload
from offload import (
    BackgroundTask,
    BackgroundTasks,
    OffloadConfig,
    OffloadError,
    Overloaded,
    Runtime,
    TaskReport,
    configure,
)
from offload._detached import Supervisor
from offload._testing import TaskRecorder
from offload.fastapi import Backgrounds
from offload.starlette import PlainTextResponse
from servers import SENT, ASGIApp, Message, call_once

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


class TaskFailed(Exception):
    pass


def noop() -> None:
    pass


def other() -> None:
    pass


def fail() -> None:
    raise TaskFailed("boom")


async def eventually(condition: Callable[[], object], *, within: float = 10) -> None:
    """Wait until ``condition()`` is true; fail the test after ``within`` seconds."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 (conditions set by other threads, too)
            await anyio.sleep(0.01)


def cancel_after_response(app: ASGIApp) -> ASGIApp:
    """A middleware that cancels the app's call once the response has been sent, as a
    timeout middleware or a server giving up on a request would."""

    async def middleware(scope: dict[str, object], receive: object, send: object) -> None:
        async with anyio.create_task_group() as group:

            async def send_then_cancel(message: Message) -> None:
                await send(message)  # type: ignore[operator]
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    group.cancel_scope.cancel()

            await app(scope, receive, send_then_cancel)  # type: ignore[arg-type]

    return middleware  # type: ignore[return-value]


@pytest.mark.anyio
async def test_awaiting_a_detached_list_returns_while_its_tasks_run_in_the_runtime() -> None:
    events: list[str] = []
    gate = anyio.Event()

    async def first() -> None:
        events.append("first started")
        await gate.wait()
        events.append("first ended")

    async def second() -> None:
        events.append("second")

    async with Runtime():
        tasks = BackgroundTasks([first, second], detach=True)
        await tasks()
        events.append("await returned")
        await eventually(lambda: "first started" in events)
        assert tasks.reports == []  # filled in once the list has ended
        gate.set()
        await eventually(lambda: tasks.reports)
    assert events == ["await returned", "first started", "first ended", "second"]
    assert [(r.name, r.status) for r in tasks.reports] == [
        ("test_awaiting_a_detached_list_returns_while_its_tasks_run_in_the_runtime.<locals>.first",
         "succeeded"),
        ("test_awaiting_a_detached_list_returns_while_its_tasks_run_in_the_runtime.<locals>.second",
         "succeeded"),
    ]  # fmt: skip


@pytest.mark.anyio
async def test_order_and_policy_hold_within_a_detached_list() -> None:
    ran: list[str] = []
    tasks = BackgroundTasks(on_error="stop", detach=False)
    tasks.add_task(ran.append, "a")
    tasks.add_task(fail)
    tasks.add_task(ran.append, "c")
    async with Runtime():
        tasks.detach = True
        await tasks()
    assert ran == ["a"]
    assert [r.status for r in tasks.reports] == ["succeeded", "failed", "skipped"]


@pytest.mark.parametrize("policy", ["raise", "collect"])
@pytest.mark.anyio
async def test_what_the_policy_raises_is_logged_since_no_caller_is_left(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime():
        tasks = BackgroundTasks(on_error=policy, detach=True)  # type: ignore[arg-type]
        tasks.add_task(fail).set(name="doomed")
        await tasks()  # raises nothing: the caller is gone by the time the task fails
    assert tasks.reports[0].status == "failed"
    summary = [r for r in caplog.records if r.getMessage().startswith("Detached background")]
    assert len(summary) == 1
    assert summary[0].levelno == logging.ERROR
    assert f"which on_error={policy!r} raises; it is only logged" in summary[0].getMessage()
    assert "Background task 'doomed' failed on the thread executor" in caplog.text


def test_detach_without_a_running_runtime_fails_at_construction() -> None:
    fix = r"lifespan=offload.lifespan\(config\), or run the code inside `async with offload"
    with pytest.raises(OffloadError, match=f"^detach=True needs a running offload Runtime.*{fix}"):
        BackgroundTasks(detach=True)
    with pytest.raises(OffloadError, match="^detach=True needs a running offload Runtime"):
        PlainTextResponse("body", backgrounds=[noop], detach=True)
    tasks = BackgroundTasks([noop])
    with pytest.raises(OffloadError, match="^detach=True needs a running offload Runtime"):
        tasks.detach = True
    assert tasks.detach is False


def test_the_configs_detach_without_a_running_runtime_fails_at_construction() -> None:
    configure(OffloadConfig(detach=True))
    with pytest.raises(OffloadError, match="^the config's detach=True needs a running offload"):
        BackgroundTasks()
    with pytest.raises(OffloadError, match="^the config's detach=True needs a running offload"):
        PlainTextResponse("body", backgrounds=[noop])
    assert BackgroundTasks([noop], detach=False).detach is False  # chosen here: no runtime needed


@pytest.mark.anyio
async def test_the_config_detaches_the_lists_that_do_not_choose() -> None:
    async with Runtime(OffloadConfig(detach=True)):
        assert BackgroundTasks().detach is True
        assert BackgroundTasks(detach=False).detach is False
        response = PlainTextResponse("body", backgrounds=[noop])
        assert response.background.detach is True
        assert (
            PlainTextResponse("body", backgrounds=[noop], detach=False).background.detach is False
        )
        await response.background()


@pytest.mark.parametrize("detach", [False, True], ids=["in-place", "detached"])
@pytest.mark.anyio
async def test_cancelling_the_request_reaches_only_tasks_that_are_not_detached(
    detach: bool, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    async def slow() -> None:
        await anyio.sleep(0.2)
        events.append("task ended")

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", backgrounds=[slow], detach=detach)

    app = Starlette(routes=[Route("/", endpoint)])
    async with Runtime(OffloadConfig(shutdown_timeout=30)):
        await call_once(cancel_after_response(app), events)
        events.append("call returned")
    # Leaving the runtime drained the detached list.
    if detach:
        assert events == [SENT, "call returned", "task ended"]
        assert "cancelled" not in caplog.text
    else:
        assert events == [SENT, "call returned"]
        assert "Background tasks cancelled before they ended: " in caplog.text
        assert "slow (1); the request that ran them was cancelled" in caplog.text


def test_past_max_pending_the_endpoint_gets_overloaded_and_can_answer_503() -> None:
    release = threading.Event()

    async def endpoint(request: Request) -> PlainTextResponse:
        try:
            return PlainTextResponse(
                "accepted", backgrounds=[BackgroundTask(release.wait, 30)], detach=True
            )
        except Overloaded as exc:
            return PlainTextResponse(str(exc), status_code=503)

    config = OffloadConfig(max_pending=2)
    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(config))
    try:
        with TestClient(app) as client:
            assert [client.get("/").status_code for _ in range(2)] == [200, 200]
            refused = client.get("/")
            assert refused.status_code == 503
            assert "detached work is at max_pending=2 (2 task lists pending or running)" in (
                refused.text
            )
            assert "answer 503 Service Unavailable so the client retries later" in refused.text
            release.set()
            for _ in range(500):  # the two lists end soon after the release
                if client.get("/").status_code == 200:
                    break
                threading.Event().wait(0.01)
            else:
                pytest.fail("the runtime never took new work after its lists ended")
    finally:
        release.set()


@pytest.mark.anyio
async def test_a_detached_list_never_run_gives_back_its_place_and_names_its_tasks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Runtime(OffloadConfig(max_pending=1)):
        unsent = BackgroundTasks(detach=True)
        unsent.add_task(noop).set(name="never sent")
        with pytest.raises(Overloaded, match=r"max_pending=1 \(1 task lists pending"):
            BackgroundTasks([noop], detach=True)
        del unsent  # its response was never sent: nothing will await it
        gc.collect()
        accepted = BackgroundTasks([noop], detach=True)
        await accepted()
    assert "Detached background tasks never sent were never run: their response was not sent" in (
        caplog.text
    )


@pytest.mark.anyio
async def test_a_detached_list_merged_into_a_response_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Runtime(OffloadConfig(max_pending=1)):
        own = BackgroundTasks([noop], detach=True)
        response = PlainTextResponse("body", background=own, backgrounds=[other])
        assert response.background is not own
        assert response.background.detach is True
        await response.background()
        del own
        gc.collect()
    assert [r.status for r in response.background.reports] == ["succeeded", "succeeded"]
    assert "never run" not in caplog.text


@pytest.mark.anyio
async def test_detach_can_be_set_on_a_list_made_elsewhere() -> None:
    async with Runtime(OffloadConfig(max_pending=1)):
        tasks = BackgroundTasks([noop])
        tasks.detach = True  # takes the only place
        with pytest.raises(Overloaded):
            BackgroundTasks([noop], detach=True)
        tasks.detach = False  # gives it back
        detached = BackgroundTasks([noop], detach=True)
        await detached()
        await tasks()
    with pytest.raises(TypeError, match="^detach must be True or False, got 'yes'$"):
        tasks.detach = "yes"  # type: ignore[assignment]


@pytest.mark.parametrize("caller", ["asyncio", "trio"])
@pytest.mark.parametrize("home", ["asyncio", "trio"])
def test_a_list_scheduled_from_another_loop_runs_on_the_runtimes_own_loop(
    home: str, caller: str
) -> None:
    runtime = Runtime()
    ran_on: list[int] = []

    async def where() -> None:
        ran_on.append(threading.get_ident())

    async def schedule() -> None:
        await BackgroundTasks([where], detach=True)()

    with start_blocking_portal(home) as portal:
        portal.call(runtime.__aenter__)
        try:
            home_thread = portal.call(threading.get_ident)
            anyio.run(schedule, backend=caller)
        finally:
            portal.call(runtime.aclose)  # drains the list
    assert ran_on == [home_thread]
    assert home_thread != threading.get_ident()


@pytest.mark.anyio
async def test_a_detached_task_sees_the_context_of_the_code_that_scheduled_it() -> None:
    seen: list[str] = []

    async def read() -> None:
        seen.append(request_id.get())

    def read_in_thread() -> None:
        seen.append(request_id.get())

    async with Runtime():
        token = request_id.set("r-42")
        try:
            await BackgroundTasks([read, read_in_thread], detach=True)()
        finally:
            request_id.reset(token)
    assert seen == ["r-42", "r-42"]


def test_fastapi_backgrounds_follow_the_configs_detach() -> None:
    reports: list[TaskReport] = []
    release = threading.Event()
    app = FastAPI(lifespan=offload.lifespan(OffloadConfig(detach=True, on_report=reports.append)))

    @app.get("/")
    async def endpoint(tasks: Backgrounds) -> dict[str, bool]:
        tasks.add_task(release.wait, 30)
        return {"detached": tasks.detach}

    try:
        with TestClient(app) as client:
            # A test client returns once the app's call has ended, background tasks included.
            assert client.get("/").json() == {"detached": True}
            assert reports == []
            release.set()
    finally:
        release.set()
    assert [r.status for r in reports] == ["succeeded"]  # the shutdown drained it


@pytest.mark.offload(detach=True)
@pytest.mark.anyio
async def test_a_test_recorder_takes_detached_lists_too(offload_recorder: TaskRecorder) -> None:
    tasks = BackgroundTasks([noop])
    assert tasks.detach is True
    await tasks()
    assert [task.name for task in offload_recorder.tasks] == ["noop"]
    reports = await offload_recorder.arun_all()
    assert [r.status for r in reports] == ["succeeded"]


@pytest.mark.anyio
async def test_awaiting_a_detached_list_again_schedules_it_again() -> None:
    ran: list[str] = []
    async with Runtime():
        tasks = BackgroundTasks(detach=True)
        tasks.add_task(ran.append, "once more")
        await tasks()
        await tasks()
    assert ran == ["once more", "once more"]


@pytest.mark.anyio
async def test_a_list_that_fails_to_start_gives_back_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot resolve")

    async with Runtime(OffloadConfig(max_pending=1)):
        tasks = BackgroundTasks([noop], detach=True)
        with monkeypatch.context() as patch:
            patch.setattr("offload._task.TaskRun", broken)
            with pytest.raises(RuntimeError, match="cannot resolve"):
                await tasks()
        await BackgroundTasks([noop], detach=True)()  # the place was given back


@pytest.mark.anyio
async def test_detach_given_to_a_response_applies_to_its_offload_background() -> None:
    async with Runtime():
        own = BackgroundTasks([noop])
        response = PlainTextResponse("body", background=own, detach=True)
        assert response.background is own
        assert own.detach is True
        await own()


# The hand-off itself


@pytest.mark.anyio
async def test_every_item_handed_to_a_closing_supervisor_is_handled_or_reported_lost() -> None:
    handled: list[int] = []
    lost: list[int] = []

    async def handle(item: int) -> None:
        handled.append(item)

    supervisor = Supervisor(handle, lost.append)
    await supervisor.start()
    for item in range(100):
        supervisor.submit(item)
    await supervisor.close()  # at once: some items have not started yet
    supervisor.submit(100)  # after close
    assert sorted(handled + lost) == list(range(101))
    assert lost[-1] == 100


@pytest.mark.parametrize("home", ["asyncio", "trio"])
def test_a_supervisor_is_closed_from_another_loop_and_refuses_items_once_its_loop_ended(
    home: str,
) -> None:
    handled: list[str] = []

    async def handle(item: str) -> None:
        handled.append(item)

    supervisor: Supervisor[str] = Supervisor(handle, lambda item: None)
    with start_blocking_portal(home) as portal:
        portal.call(supervisor.start)
        supervisor.submit("from a plain thread")
        deadline = time.monotonic() + 10
        while not handled and time.monotonic() < deadline:
            time.sleep(0.01)
        anyio.run(supervisor.close)  # another loop, in another thread
    assert handled == ["from a plain thread"]
    with pytest.raises(anyio.RunFinishedError):
        supervisor.submit("too late")


@pytest.mark.anyio
async def test_a_detached_list_emptied_before_it_is_awaited_gives_back_its_place() -> None:
    async with Runtime(OffloadConfig(max_pending=1)):
        tasks = BackgroundTasks([noop], detach=True)
        tasks.tasks.clear()  # the endpoint found nothing to do after all
        await tasks()
        await BackgroundTasks([noop], detach=True)()  # the place was given back


@pytest.mark.anyio
async def test_closing_a_supervisor_waits_a_bounded_time_and_returns_the_items_left() -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def stubborn(item: str) -> None:
        started.set()
        with anyio.CancelScope(shield=True):  # as a task that swallows its cancellation
            await release.wait()

    supervisor: Supervisor[str] = Supervisor(stubborn, lambda item: None)
    await supervisor.start()
    supervisor.submit("stubborn")
    await started.wait()
    with anyio.fail_after(10):
        assert await supervisor.close(0.05) == ["stubborn"]
        release.set()
        assert await supervisor.close() == []
