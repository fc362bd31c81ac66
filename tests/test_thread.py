"""The thread executor: its own limiter, context variables, coroutine functions."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from offload import (
    BackgroundTask,
    BackgroundTasks,
    ConfigError,
    OffloadConfig,
    Runtime,
    ThreadExecutor,
)

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def wait_until(condition: object, seconds: float = 5) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (no event to wait on)
            await anyio.sleep(0.005)


async def test_a_full_offload_limiter_leaves_sync_endpoints_their_threads() -> None:
    release = threading.Event()

    def sync_endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(threading.current_thread().name)

    app = Starlette(routes=[Route("/sync", sync_endpoint)])
    # Starlette's sync endpoints share anyio's default limiter; shrink it to offload's size so
    # that, were offload borrowing from it, the endpoint below would wait for a free token.
    anyio.to_thread.current_default_thread_limiter().total_tokens = 2
    async with Runtime(OffloadConfig(thread_limit=2)) as runtime, anyio.create_task_group() as tg:
        tasks = BackgroundTasks(concurrency="group")
        for _ in range(3):
            tasks.add_task(release.wait, 10)
        tg.start_soon(tasks)
        offload_limiter = runtime.executor("thread").limiter  # type: ignore[attr-defined]
        await wait_until(lambda: offload_limiter.statistics().tasks_waiting == 1)
        assert offload_limiter.borrowed_tokens == 2

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with anyio.fail_after(5):
                response = await client.get("/sync")
        assert response.status_code == 200
        assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        release.set()
    assert [r.status for r in tasks.reports] == ["succeeded"] * 3


async def test_thread_limit_bounds_how_many_tasks_run_at_once() -> None:
    running = peak = 0
    lock = threading.Lock()

    def count() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.05)
        with lock:
            running -= 1

    async with Runtime(OffloadConfig(thread_limit=2)):
        tasks = BackgroundTasks(concurrency="group")
        for _ in range(6):
            tasks.add_task(count)
        await tasks()
    assert peak == 2


async def test_context_variables_reach_the_thread() -> None:
    seen: list[str] = []
    request_id.set("req-42")
    tasks = BackgroundTasks()
    tasks.add_task(lambda: seen.append(request_id.get()))
    await tasks()
    assert seen == ["req-42"]


async def test_a_coroutine_function_runs_on_its_own_loop_in_a_thread() -> None:
    where: list[tuple[str, bool]] = []

    async def probe() -> None:
        asyncio.get_running_loop()  # raises if no asyncio loop runs here
        where.append((threading.current_thread().name, threading.current_thread() is main))

    main = threading.current_thread()
    tasks = BackgroundTasks(executor="thread")
    tasks.add_task(probe)
    await tasks()
    assert len(where) == 1
    assert where[0][1] is False


def test_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="limit must be an int >= 1, got 0"):
        ThreadExecutor(limit=0)


async def test_each_event_loop_gets_its_own_limiter() -> None:
    executor = ThreadExecutor(limit=3)
    here = executor.limiter
    assert executor.limiter is here
    assert here.total_tokens == 3

    def other_loop() -> object:
        async def get() -> object:
            return executor.limiter

        return anyio.run(get)

    assert await anyio.to_thread.run_sync(other_loop) is not here


class Hang:
    """Thread task bodies that block until :meth:`end`; counts how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = self.peak = self.started = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.started += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(30)
        finally:
            with self._lock:
                self.running -= 1

    def end(self) -> None:
        """Let every blocked thread return, and wait until they have."""
        self.release.set()
        deadline = time.monotonic() + 5
        while self.running and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.running == 0, "a hung test thread did not return"


@pytest.fixture
def hang() -> Iterator[Hang]:
    """A :class:`Hang` whose threads all return at teardown, whether the test passed or not."""
    hang = Hang()
    try:
        yield hang
    finally:
        hang.end()


def held_by(limit: int, count: int, names: list[str]) -> str:
    named = ", ".join(repr(name) for name in names)
    return (
        f"it waited for a thread: thread_limit={limit} is held by {count} tasks that "
        f"timed out or were cancelled and still run in their threads: {named}"
    )


async def test_hung_tasks_keep_their_tokens_so_thread_limit_bounds_the_threads(
    hang: Hang,
) -> None:
    async with Runtime(OffloadConfig(thread_limit=5, on_error="continue")):
        tasks = BackgroundTasks(concurrency="group")
        for index in range(30):
            tasks.add_task(hang).set(timeout=0.2, name=f"hang-{index}")
        with anyio.fail_after(5):
            await tasks()
        assert hang.peak == hang.started == 5
    assert [r.status for r in tasks.reports] == ["timed_out"] * 30
    for report in tasks.reports[:5]:  # these ran out of time in their threads
        assert str(report.error).endswith("timed out after 0.2s on the thread executor")
    expected = held_by(5, 5, ["hang-0", "hang-1", "hang-2"]) + " (+2 more)"
    for report in tasks.reports[5:]:  # these never got a thread
        assert str(report.error) == (
            f"background task {report.name!r} timed out after 0.2s on the thread executor: "
            f"{expected}"
        )


async def test_the_tokens_come_back_when_the_hung_threads_return(hang: Hang) -> None:
    async with Runtime(OffloadConfig(thread_limit=2, on_error="continue")) as runtime:
        limiter = runtime.executor("thread").limiter  # type: ignore[attr-defined]
        hung = BackgroundTasks(concurrency="group")
        for _ in range(2):
            hung.add_task(hang).set(timeout=0.2, name="hang")
        await hung()
        assert limiter.borrowed_tokens == 2

        blocked = BackgroundTasks()
        blocked.add_task(lambda: None).set(timeout=0.05, name="blocked")
        await blocked()
        assert blocked.reports[0].status == "timed_out"
        assert held_by(2, 2, ["hang", "hang"]) in str(blocked.reports[0].error)

        await anyio.to_thread.run_sync(hang.end)
        await wait_until(lambda: limiter.borrowed_tokens == 0)
        after = BackgroundTasks()
        after.add_task(lambda: None).set(timeout=5)
        await after()
    assert after.reports[0].status == "succeeded"


async def test_a_task_waits_for_the_token_of_a_timed_out_task_until_its_thread_ends() -> None:
    ran: list[str] = []

    def slow() -> None:
        threading.Event().wait(0.3)
        ran.append("slow")

    async with Runtime(OffloadConfig(thread_limit=1, on_error="continue")):
        tasks = BackgroundTasks()
        tasks.add_task(slow).set(timeout=0.1)
        tasks.add_task(ran.append, "next").set(timeout=5)
        with anyio.fail_after(5):
            await tasks()
    assert [r.status for r in tasks.reports] == ["timed_out", "succeeded"]
    assert ran == ["slow", "next"]


async def test_sequential_tasks_give_their_tokens_back_as_they_end() -> None:
    executor = ThreadExecutor(limit=1)
    results = [await executor.run(BackgroundTask(pow, 2, n)) for n in range(50)]
    assert results == [2**n for n in range(50)]
    assert executor.limiter.borrowed_tokens == 0
    assert executor.explain_timeout(BackgroundTask(pow, 2, 1)) is None


async def test_a_task_given_up_on_before_its_thread_starts_never_runs() -> None:
    executor = ThreadExecutor(limit=1)
    ran: list[int] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await executor.run(BackgroundTask(ran.append, 1))
    await anyio.sleep(0.05)  # time for a thread to start, were one started
    assert ran == []
    assert executor.limiter.borrowed_tokens == 0


async def test_explain_timeout_answers_once_and_only_for_the_last_run(hang: Hang) -> None:
    executor = ThreadExecutor(limit=1)
    with anyio.move_on_after(0.2):
        await executor.run(BackgroundTask(hang).set(name="hang"))
    waiter = BackgroundTask(lambda: None)
    for _ in range(2):
        with anyio.move_on_after(0.05):
            await executor.run(waiter)
    assert executor.explain_timeout(waiter) == (
        "it waited for a thread: thread_limit=1 is held by 1 task that timed out or was "
        "cancelled and still runs in its thread: 'hang'"
    )
    assert executor.explain_timeout(waiter) is None

    with anyio.move_on_after(0.05):
        await executor.run(waiter)
    await anyio.to_thread.run_sync(hang.end)
    await wait_until(lambda: executor.limiter.borrowed_tokens == 0)
    await executor.run(waiter)  # got its thread at once: nothing to explain
    assert executor.explain_timeout(waiter) is None
