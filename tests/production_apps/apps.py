"""Starlette apps served by real servers in tests/test_production.py.

Each app answers ``GET /ping`` (readiness) and ``GET /work?mark=PATH&seconds=S``: the response
(``{"pid": <the serving process>}``) comes at once, then a background task writes the pid of
the process it runs in to ``PATH`` and sleeps ``S`` seconds.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import offload
from offload import BackgroundTask
from offload.starlette import JSONResponse

from .tasks import mark


def make_app(*, lifespan: bool, process: bool) -> Starlette:
    """An app whose ``/work`` task runs on the process executor (``process``), else on the
    default choice (a thread); with ``offload.lifespan()`` or on the default runtime."""

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    async def work(request: Request) -> JSONResponse:
        task = BackgroundTask(
            mark, request.query_params["mark"], float(request.query_params.get("seconds", "0"))
        )
        if process:
            task.set(executor="process")
        return JSONResponse({"pid": os.getpid()}, backgrounds=[task], on_error="continue")

    return Starlette(
        routes=[Route("/ping", ping), Route("/work", work)],
        lifespan=offload.lifespan() if lifespan else None,
    )


#: Process tasks, with ``offload.lifespan()``.
with_lifespan = make_app(lifespan=True, process=True)
#: Process tasks on the default runtime: offload swapped in without touching the lifespan.
without_lifespan = make_app(lifespan=False, process=True)
#: Thread tasks only, with ``offload.lifespan()``: an app that never uses the process executor.
no_process = make_app(lifespan=True, process=False)
