"""The Starlette app that the real-server benchmarks run on uvicorn (see ``harness.server``).

Each pair of routes does the same thing once with Starlette's own ``BackgroundTask`` (the
anchor) and once with offload's response mixin, so both run on the same server, side by side.
"""

from __future__ import annotations

from harness import burn_and_mark
from starlette.applications import Starlette
from starlette.background import BackgroundTask as StarletteTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import offload
import offload.starlette


def sync_noop() -> None:
    pass


async def async_noop() -> None:
    pass


NOOPS = {"async": async_noop, "sync": sync_noop}


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


async def starlette_noop(request: Request) -> PlainTextResponse:
    noop = NOOPS[request.path_params["kind"]]
    return PlainTextResponse("ok", background=StarletteTask(noop))


async def offload_noop(request: Request) -> PlainTextResponse:
    noop = NOOPS[request.path_params["kind"]]
    return offload.starlette.PlainTextResponse("ok", backgrounds=[offload.BackgroundTask(noop)])


def cpu_task_args(request: Request) -> tuple[int, str]:
    """The work a ``/cpu`` request asks for: ``?iterations=`` of :func:`burn_and_mark`, and the
    ``?marker=`` file to create when done."""
    return int(request.query_params["iterations"]), request.query_params["marker"]


async def starlette_cpu(request: Request) -> PlainTextResponse:
    # A sync function: Starlette runs it in anyio's thread pool, as users' CPU tasks do.
    return PlainTextResponse("ok", background=StarletteTask(burn_and_mark, *cpu_task_args(request)))


async def offload_cpu(request: Request) -> PlainTextResponse:
    return offload.starlette.PlainTextResponse(
        "ok",
        backgrounds=[offload.BackgroundTask(burn_and_mark, *cpu_task_args(request))],
        executor="process",
    )


# Two workers, one per core of the machine the targets are set for. The fork server imports
# the task's module once, so no worker pays for that import during a measurement.
config = offload.OffloadConfig(process_workers=2, preload=("harness",))

app = Starlette(
    routes=[
        Route("/ping", ping),
        Route("/noop/starlette/{kind}", starlette_noop),
        Route("/noop/offload/{kind}", offload_noop),
        Route("/cpu/starlette", starlette_cpu),
        Route("/cpu/offload", offload_cpu),
    ],
    lifespan=offload.lifespan(config),  # starts the worker processes before the first request
)
