"""The shop that ``make demo`` drives (see ``demo.py``): every order schedules background work.

An order's response is sent at once; then two background tasks run: rendering the invoice
(CPU-heavy, pure Python, so it holds the GIL) and sending the receipt (I/O: waiting on a mail
server). ``?executor=`` chooses where they run:

- ``inline``, ``thread``, ``process``: offload's executors, for both tasks;
- ``per-task``: the invoice on ``process``, the receipt on the event loop (what you would
  choose in a real app);
- ``starlette``: Starlette's own ``BackgroundTask``, the baseline.

Each task writes its result into the outbox directory, which is how the demo sees tasks end
without asking the (possibly busy) server. Run it on its own with
``python examples/demo_app.py``, then
``curl -X POST 'localhost:8000/orders/1?executor=process'`` and look in the outbox it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import tempfile
import time
from pathlib import Path

import anyio
import starlette.background
import starlette.responses
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

import offload
from offload import BackgroundTask
from offload.starlette import JSONResponse

EXECUTORS = ("inline", "thread", "process", "per-task", "starlette")


def render_invoice(order_id: int, cpu_seconds: float, outbox: str, report: bool = False) -> None:
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


async def send_receipt(order_id: int, outbox: str) -> None:
    """I/O: wait as a call to a mail server would, then record the receipt as sent."""
    await anyio.sleep(0.1)
    await anyio.Path(outbox, f"receipt-{order_id}.txt").write_text(f"order {order_id}: sent\n")


async def create_order(request: Request) -> Response:
    order_id: int = request.path_params["order_id"]
    executor = request.query_params.get("executor", "per-task")
    cpu_seconds = float(request.query_params.get("cpu", "0.2"))
    outbox: str = request.app.state.outbox
    if executor not in EXECUTORS:
        return PlainTextResponse(f"executor must be one of {EXECUTORS}", status_code=400)
    body = {"order": order_id, "executor": executor}
    if executor == "starlette":
        tasks = starlette.background.BackgroundTasks()
        tasks.add_task(render_invoice, order_id, cpu_seconds, outbox)
        tasks.add_task(send_receipt, order_id, outbox)
        return starlette.responses.JSONResponse(body, background=tasks)
    if executor == "per-task":
        # The CPU-heavy task says where it runs; the receipt, a coroutine function, runs on
        # the event loop (offload's "auto" default), where waiting costs nothing.
        return JSONResponse(
            body,
            backgrounds=[
                BackgroundTask(render_invoice, order_id, cpu_seconds, outbox).set(
                    executor="process"
                ),
                BackgroundTask(send_receipt, order_id, outbox),
            ],
        )
    return JSONResponse(
        body,
        backgrounds=[
            BackgroundTask(render_invoice, order_id, cpu_seconds, outbox),
            BackgroundTask(send_receipt, order_id, outbox),
        ],
        executor=executor,
    )


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


async def ping(request: Request) -> PlainTextResponse:
    """What every other user of the server is doing meanwhile: a trivial request."""
    return PlainTextResponse("pong")


def create_app(outbox: str) -> Starlette:
    """Return the shop, writing its tasks' results into ``outbox``."""
    app = Starlette(
        routes=[
            Route("/orders/{order_id:int}", create_order, methods=["POST"]),
            Route("/invoices/{order_id:int}", start_invoice, methods=["POST"]),
            Route("/ping", ping),
            Mount("/tasks", offload.status_app()),
        ],
        # Starts the worker processes before the first request; drains tasks at shutdown.
        lifespan=offload.lifespan(offload.OffloadConfig()),
    )
    app.state.outbox = outbox
    return app


def main() -> None:
    """Serve the shop on 127.0.0.1 until Ctrl-C; print its URL and outbox first."""
    parser = argparse.ArgumentParser(description="The demo shop, on uvicorn.")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--outbox", help="where tasks write (default: a new temporary folder)")
    args = parser.parse_args()
    outbox = args.outbox or tempfile.mkdtemp(prefix="offload-demo-")
    # IPPROTO_TCP, not the default 0: only then does asyncio set TCP_NODELAY on connections,
    # without which Nagle's algorithm holds each response's body back ~40 ms.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
    listener.bind(("127.0.0.1", args.port))
    print(f"http://127.0.0.1:{listener.getsockname()[1]} outbox {outbox}", flush=True)
    config = uvicorn.Config(create_app(outbox), log_level="warning", access_log=False)
    # uvicorn shuts down gracefully on Ctrl-C (draining the tasks), then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
