"""The thread executor: its own limiter, context variables, coroutine functions."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from offload import BackgroundTasks, ConfigError, OffloadConfig, Runtime, ThreadExecutor

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
