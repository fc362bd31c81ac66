"""The shop that ``make demo`` drives (see ``demo.py``), its routes grouped by scenario.

Every route answers at once and leaves its work to background tasks. ``?via=`` chooses
what runs them: ``starlette`` (Starlette's own ``BackgroundTask``, the baseline: a coroutine
function on the event loop, anything else in anyio's thread pool), or the name of one of
offload's executors (``inline``, ``thread``, ``process``). The routes answer the ids of
offload's tasks, whose statuses ``GET /tasks/{id}`` shows.

1. CPU-heavy tasks: ``POST /cpu/{order}?via=&cpu=`` renders an invoice, pure-Python work
   that holds the GIL; ``via=starlette-async`` runs it as an ``async def`` task instead.
2. Blocking tasks: ``POST /blocking/{order}?via=&seconds=`` blocks a thread, as a sync mail
   client or database driver does; ``GET /stock`` is a sync (``def``) endpoint.
3. Crashes and hangs: ``POST /risky/{order}?fault=crash|hang|none&via=&timeout=``.
4. Per-task executors: ``POST /mixed/{order}`` runs three tasks, each on its own executor.
5. Following a task: ``POST /invoices/{order}`` renders an invoice in a worker process
   apart from the request, reporting its progress.
6. Durable tasks: ``POST /durable/{order}?cpu=`` journals the invoice (with ``--journal``)
   before it answers, so the invoice is rendered even if the server is killed first.

Tasks write what they did into the outbox directory, which is how the demo sees them end
without asking the (possibly busy) server. Run it on its own with
``python examples/demo_app.py``, then ``curl -X POST 'localhost:8000/cpu/1?via=process'``
and look in the outbox it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import starlette.background
import starlette.responses
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

import offload
from offload import BackgroundTask
from offload.starlette import JSONResponse

VIA = ("starlette", "inline", "thread", "process")


def where() -> dict[str, object]:
    """What a task returns: the process and thread it ran in, for the demo to show."""
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


def answer(request: Request, tasks: list[BackgroundTask], **options: Any) -> Response:
    """Answer the tasks' ids and the server's pid at once; run ``tasks`` after, as ``?via=`` says.

    :param options: the response's own options for offload (``on_error=``, ...)
    """
    via = request.query_params.get("via", "process")
    if via not in VIA:
        return PlainTextResponse(f"via must be one of {VIA}, got {via!r}", status_code=400)
    if via == "starlette":  # Starlette's tasks have no id, nor any status to follow
        baseline = starlette.background.BackgroundTasks()
        for task in tasks:
            baseline.add_task(task.func, *task.args, **task.kwargs)
        return starlette.responses.JSONResponse({"ids": []}, background=baseline)
    body = {"ids": [task.id for task in tasks], "pid": os.getpid()}
    return JSONResponse(body, backgrounds=tasks, executor=via, **options)


# 1. CPU-heavy tasks ----------------------------------------------------------------------


def render_invoice(
    order_id: int, cpu_seconds: float, outbox: str, report: bool = False
) -> dict[str, object]:
    """CPU-heavy: do ``cpu_seconds`` of pure-Python work, then write the invoice.

    The work is measured in CPU time of this thread, so a task that has to wait for the GIL
    takes longer (in wall time) but never does less work. With ``report``, it says how far
    it has got (``offload.set_progress``) as it goes.
    """
    start = time.thread_time()
    checksum = order_id
    while (spent := time.thread_time() - start) < cpu_seconds:
        for line in range(1_000):
            checksum = (checksum * 31 + line) % 1_000_003
        if report:
            offload.set_progress(round(spent / cpu_seconds * 100), 100, "rendering")
    Path(outbox, f"invoice-{order_id}.txt").write_text(f"order {order_id}: {checksum}\n")
    return where()


async def render_invoice_async(order_id: int, cpu_seconds: float, outbox: str) -> None:
    """The same work in an ``async def`` task, as it often ends up written."""
    render_invoice(order_id, cpu_seconds, outbox)


async def cpu_order(request: Request) -> Response:
    order_id: int = request.path_params["order_id"]
    cpu_seconds = float(request.query_params.get("cpu", "0.1"))
    outbox: str = request.app.state.outbox
    if request.query_params.get("via") == "starlette-async":
        return starlette.responses.JSONResponse(
            {"ids": []},
            background=starlette.background.BackgroundTask(
                render_invoice_async, order_id, cpu_seconds, outbox
            ),
        )
    return answer(request, [BackgroundTask(render_invoice, order_id, cpu_seconds, outbox)])


CPU_ROUTES = [Route("/cpu/{order_id:int}", cpu_order, methods=["POST"])]


# 2. Blocking tasks and sync endpoints ----------------------------------------------------


def block(order_id: int, seconds: float, outbox: str) -> None:
    """Block this thread for ``seconds``, as a call through a sync client does."""
    time.sleep(seconds)
    Path(outbox, f"blocked-{order_id}.txt").write_text(f"order {order_id}: done\n")


async def blocking_order(request: Request) -> Response:
    order_id: int = request.path_params["order_id"]
    seconds = float(request.query_params.get("seconds", "0.5"))
    return answer(request, [BackgroundTask(block, order_id, seconds, request.app.state.outbox)])


def stock(request: Request) -> PlainTextResponse:
    """A sync endpoint: Starlette runs it in anyio's thread pool, under its default limiter."""
    return PlainTextResponse("12 in stock")


BLOCKING_ROUTES = [
    Route("/blocking/{order_id:int}", blocking_order, methods=["POST"]),
    Route("/stock", stock),
]


# 3. Crashes and hangs --------------------------------------------------------------------


def crash(order_id: int) -> None:
    """Die at once, as a worker does when a C extension segfaults or the OOM killer strikes."""
    os._exit(1)


def hang(order_id: int) -> None:
    """Never return, as a call to a server that never answers."""
    time.sleep(3600)


async def risky_order(request: Request) -> Response:
    order_id: int = request.path_params["order_id"]
    fault = request.query_params.get("fault", "none")
    timeout = float(request.query_params.get("timeout", "1"))
    faults: dict[str, Callable[..., object]] = {"crash": crash, "hang": hang}
    if fault == "none":
        task = BackgroundTask(render_invoice, order_id, 0.02, request.app.state.outbox)
    elif fault in faults:
        task = BackgroundTask(faults[fault], order_id)
    else:
        return PlainTextResponse(f"fault must be crash, hang or none, got {fault!r}", 400)
    # "continue": a failure is logged and reported, and the server does not log it again.
    return answer(request, [task.set(timeout=timeout)], on_error="continue")


RISKY_ROUTES = [Route("/risky/{order_id:int}", risky_order, methods=["POST"])]


# 4. Per-task executors -------------------------------------------------------------------


async def send_receipt(order_id: int, outbox: str) -> dict[str, object]:
    """I/O: wait as a call to a mail server would, then record the receipt as sent."""
    await anyio.sleep(0.1)
    await anyio.Path(outbox, f"receipt-{order_id}.txt").write_text(f"order {order_id}: sent\n")
    return where()


def record_sale(order_id: int, outbox: str) -> dict[str, object]:
    """Blocking I/O: a sync database driver's insert."""
    time.sleep(0.05)
    Path(outbox, f"sale-{order_id}.txt").write_text(f"order {order_id}: recorded\n")
    return where()


async def mixed_order(request: Request) -> Response:
    """One response, three tasks, three executors; they still run one after another."""
    order_id: int = request.path_params["order_id"]
    outbox: str = request.app.state.outbox
    tasks = [
        BackgroundTask(render_invoice, order_id, 0.1, outbox).set(executor="process"),
        # A coroutine function: offload's "auto" runs it on the event loop.
        BackgroundTask(send_receipt, order_id, outbox),
        BackgroundTask(record_sale, order_id, outbox).set(executor="thread"),
    ]
    body = {"ids": [task.id for task in tasks], "pid": os.getpid()}
    return JSONResponse(body, backgrounds=tasks)


MIXED_ROUTES = [Route("/mixed/{order_id:int}", mixed_order, methods=["POST"])]


# 5. Following a task ---------------------------------------------------------------------


async def start_invoice(request: Request) -> Response:
    """Render one invoice in a worker process, apart from the request: answer its id (202),
    which ``GET /tasks/{id}`` follows."""
    order_id: int = request.path_params["order_id"]
    cpu_seconds = float(request.query_params.get("cpu", "1"))
    tasks = offload.BackgroundTasks(detach=True)
    task = tasks.add_task(render_invoice, order_id, cpu_seconds, request.app.state.outbox, True)
    task.set(executor="process")
    await tasks()
    return JSONResponse({"id": task.id}, status_code=202)


FOLLOW_ROUTES = [Route("/invoices/{order_id:int}", start_invoice, methods=["POST"])]


# 6. Durable tasks ------------------------------------------------------------------------


def render_durable_invoice(order_id: int, cpu_seconds: float, outbox: str) -> None:
    """Render an invoice, marking each start (a durable task may run twice: when the server
    dies while it runs, the next one runs it again)."""
    with Path(outbox, f"durable-{order_id}.starts").open("a") as starts:
        starts.write(f"{os.getpid()}\n")
    render_invoice(order_id, cpu_seconds, outbox)


async def durable_order(request: Request) -> Response:
    """Journal the order's invoice, then answer: from here on it is rendered at least once,
    by this server or the next one on the journal."""
    order_id: int = request.path_params["order_id"]
    cpu_seconds = float(request.query_params.get("cpu", "0.3"))
    task = BackgroundTask(render_durable_invoice, order_id, cpu_seconds, request.app.state.outbox)
    task.set(executor="process", key=f"invoice-{order_id}")
    return JSONResponse({"ids": [task.id], "pid": os.getpid()}, backgrounds=[task], durable=True)


DURABLE_ROUTES = [Route("/durable/{order_id:int}", durable_order, methods=["POST"])]


# The shop --------------------------------------------------------------------------------


async def ping(request: Request) -> PlainTextResponse:
    """What every other user of the server is doing meanwhile: a trivial request."""
    return PlainTextResponse("pong")


def create_app(outbox: str, journal: str | None = None) -> Starlette:
    """Return the shop, writing its tasks' results into ``outbox``, and its durable tasks to
    the ``journal`` file, if given."""
    routes: list[BaseRoute] = [
        Route("/ping", ping),
        *CPU_ROUTES,
        *BLOCKING_ROUTES,
        *RISKY_ROUTES,
        *MIXED_ROUTES,
        *FOLLOW_ROUTES,
        *DURABLE_ROUTES,
        # Errors shown, for the demo to print them; an app open to the world keeps them in.
        Mount("/tasks", offload.status_app(expose_errors=True)),
    ]
    app = Starlette(
        routes=routes,
        # Starts the worker processes before the first request; drains tasks at shutdown.
        # thread_limit (40 by default) is the thread executor's own, apart from anyio's.
        # With a journal, it also runs what a killed server on the same journal left.
        lifespan=offload.lifespan(offload.OffloadConfig(journal=journal)),
    )
    app.state.outbox = outbox
    return app


def main() -> None:
    """Serve the shop on 127.0.0.1 until Ctrl-C; print its URL and outbox first."""
    parser = argparse.ArgumentParser(description="The demo shop, on uvicorn.")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--outbox", help="where tasks write (default: a new temporary folder)")
    parser.add_argument("--journal", help="the SQLite journal of durable tasks (scenario 6)")
    args = parser.parse_args()
    outbox = args.outbox or tempfile.mkdtemp(prefix="offload-demo-")
    # IPPROTO_TCP, not the default 0: only then does asyncio set TCP_NODELAY on connections,
    # without which Nagle's algorithm holds each response's body back ~40 ms.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
    listener.bind(("127.0.0.1", args.port))
    print(f"http://127.0.0.1:{listener.getsockname()[1]} outbox {outbox}", flush=True)
    app = create_app(outbox, args.journal)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    # uvicorn shuts down gracefully on Ctrl-C (draining the tasks), then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
