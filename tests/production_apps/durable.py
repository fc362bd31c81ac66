"""A shop whose invoices are durable process tasks, served by real servers in
tests/test_durable_server.py, with the journal ``OFFLOAD_JOURNAL`` names.

``GET /order?id=N&seconds=S&marks=DIR`` answers ``{"pid": <the serving process>}`` once the
order's task is journaled; the task appends a line to ``DIR/N.starts`` when it starts, works
``S`` seconds, then appends one to ``DIR/N.done``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import offload
from offload import BackgroundTask
from offload.starlette import JSONResponse


def invoice(marks: str, order: str, seconds: float) -> None:
    """Render an order's invoice: mark the start, work, mark the end."""
    with open(Path(marks, f"{order}.starts"), "a") as starts:
        starts.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    with open(Path(marks, f"{order}.done"), "a") as done:
        done.write(f"{os.getpid()}\n")


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


async def order(request: Request) -> JSONResponse:
    query = request.query_params
    task = BackgroundTask(invoice, query["marks"], query["id"], float(query["seconds"]))
    task.set(executor="process", name=f"invoice {query['id']}")
    return JSONResponse({"pid": os.getpid()}, backgrounds=[task], durable=True)


app = Starlette(
    routes=[Route("/ping", ping), Route("/order", order)],
    lifespan=offload.lifespan(offload.OffloadConfig.from_env()),
)
