"""offload.lifespan: a Runtime for the application's lifetime, composed with its own lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import offload
from offload import BackgroundTasks, OffloadConfig
from offload._default import current_runtime
from offload._runtime import entered_runtime


def runtime_config() -> OffloadConfig | None:
    """The config of the entered runtime, or None when none is entered."""
    runtime = entered_runtime()
    return runtime.config if runtime is not None else None


@pytest.mark.anyio
async def test_the_lifespan_enters_a_runtime_with_the_config() -> None:
    config = OffloadConfig(thread_limit=3)
    async with offload.lifespan(config)(object()) as state:
        assert state is None
        assert current_runtime().config is config
    assert runtime_config() is None


@pytest.mark.anyio
async def test_without_a_config_it_uses_the_default_config_at_startup() -> None:
    lifespan = offload.lifespan()
    config = OffloadConfig(thread_limit=5)
    offload.configure(config)
    async with lifespan(object()):
        assert runtime_config() is config


@pytest.mark.anyio
async def test_the_runtime_lives_inside_the_apps_own_lifespan() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: object) -> AsyncIterator[dict[str, Any]]:
        events.append(f"app startup, runtime entered: {runtime_config() is not None}")
        yield {"pool": "the pool"}
        events.append(f"app shutdown, runtime entered: {runtime_config() is not None}")

    async with offload.lifespan(OffloadConfig(), app_lifespan)(object()) as state:
        events.append(f"serving, runtime entered: {runtime_config() is not None}")
        assert state == {"pool": "the pool"}
    assert events == [
        "app startup, runtime entered: False",
        "serving, runtime entered: True",
        "app shutdown, runtime entered: False",  # in-flight tasks drained before this
    ]


@pytest.mark.anyio
async def test_shutdown_drains_tasks_still_running() -> None:
    started, finished = anyio.Event(), []

    async def slow() -> None:
        started.set()
        await anyio.sleep(0.2)
        finished.append("slow")

    async with anyio.create_task_group() as group:
        async with offload.lifespan(OffloadConfig(shutdown_timeout=30))(object()):
            group.start_soon(BackgroundTasks([slow]))
            await started.wait()
        assert finished == ["slow"]  # the lifespan's exit waited for it


@pytest.mark.anyio
async def test_shutdown_logs_tasks_it_had_to_abandon(caplog: pytest.LogCaptureFixture) -> None:
    started = anyio.Event()

    async def endless() -> None:
        started.set()
        await anyio.sleep_forever()

    caplog.set_level(logging.ERROR, logger="offload")
    async with anyio.create_task_group() as group:
        async with offload.lifespan(OffloadConfig(shutdown_timeout=0.05))(object()):
            group.start_soon(BackgroundTasks([endless]))
            await started.wait()
        group.cancel_scope.cancel()
    assert "1 background task(s) unfinished" in caplog.text
    assert "endless" in caplog.text


def test_app_state_reaches_starlette_requests() -> None:
    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        yield {"greeting": "hello"}

    async def endpoint(request: Request) -> JSONResponse:
        entered = runtime_config() is not None
        return JSONResponse({"greeting": request.state.greeting, "runtime": entered})

    app = Starlette(
        routes=[Route("/", endpoint)], lifespan=offload.lifespan(OffloadConfig(), app_lifespan)
    )
    with TestClient(app) as client:
        assert client.get("/").json() == {"greeting": "hello", "runtime": True}
    assert runtime_config() is None


def test_fastapi_accepts_it() -> None:
    config = OffloadConfig(thread_limit=7)
    app = FastAPI(lifespan=offload.lifespan(config))

    @app.get("/")
    async def endpoint() -> dict[str, int]:
        return {"thread_limit": current_runtime().config.thread_limit}

    with TestClient(app) as client:
        assert client.get("/").json() == {"thread_limit": 7}


def test_a_failing_app_startup_enters_no_runtime() -> None:
    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    app = Starlette(lifespan=offload.lifespan(OffloadConfig(), app_lifespan))
    with pytest.raises(RuntimeError, match="no database"), TestClient(app):
        pass
    assert runtime_config() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (({"executor": "thread"},), r"needs an OffloadConfig or None first, got \{.*from_mapping"),
        ((runtime_config,), r"got <function runtime_config.*lifespan\(config, app_lifespan\)"),
        ((None, "not a function"), r"app_lifespan must be .* got 'not a function'"),
    ],
)
def test_bad_arguments_are_refused_at_once(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        offload.lifespan(*args)
