"""A Starlette app whose responses run their background tasks through offload.

Run it with ``python examples/starlette_app.py``, then ``curl -X POST localhost:8000/reports/42``:
the answer comes at once; the report is rendered afterwards in a worker process, so the server
keeps answering meanwhile, and then the notification goes out on the event loop.
"""

from __future__ import annotations

import hashlib

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import offload
from offload import BackgroundTask, task_options
from offload.starlette import JSONResponse


@task_options(executor="process", timeout=60)  # CPU-heavy: a worker process, never the loop
def render_report(report_id: int) -> None:
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered: {digest.hex()[:16]}", flush=True)


async def notify(report_id: int) -> None:  # async: runs on the event loop
    print(f"report {report_id}: notification sent", flush=True)


async def create_report(request: Request) -> JSONResponse:
    report_id: int = request.path_params["report_id"]
    return JSONResponse(
        {"report": report_id, "status": "accepted"},
        backgrounds=[BackgroundTask(render_report, report_id), BackgroundTask(notify, report_id)],
        on_error="continue",  # a failure is logged with its traceback; the rest still run
    )


app = Starlette(
    routes=[Route("/reports/{report_id:int}", create_report, methods=["POST"])],
    # Starts the process pool with the app and drains running tasks at shutdown.
    lifespan=offload.lifespan(offload.OffloadConfig(process_workers=2)),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
