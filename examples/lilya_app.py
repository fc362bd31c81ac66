"""A Lilya app whose background tasks run through offload.

Run it with ``python examples/lilya_app.py``, then
``curl -X POST localhost:8000/reports/42``: the answer comes at once; then
the audit runs in a thread of offload's own pool, the report renders in a
worker process (the server keeps answering), and the notification goes out
on the event loop.
"""

from __future__ import annotations

import hashlib

import uvicorn
from lilya.apps import Lilya
from lilya.requests import Request
from lilya.routing import Path

import offload
from offload.lilya import JSONResponse, Task


def audit(report_id: int) -> None:  # sync: a thread of offload's pool
    print(f"report {report_id}: audited", flush=True)


def render_report(report_id: int) -> None:  # CPU-heavy: a worker process
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered: {digest.hex()[:16]}", flush=True)


async def notify(report_id: int) -> None:  # async: on the event loop
    print(f"report {report_id}: notification sent", flush=True)


async def create_report(request: Request) -> JSONResponse:
    report_id = int(request.path_params["report_id"])
    render = Task(render_report, report_id)
    return JSONResponse(
        {"report": report_id, "status": "accepted"},
        backgrounds=[
            Task(audit, report_id),
            render.set(executor="process", timeout=60),
            Task(notify, report_id),
        ],
        on_error="continue",  # a failure is logged; the rest still run
    )


app = Lilya(
    routes=[Path("/reports/{report_id:int}", create_report, methods=["POST"])],
    # Starts the worker processes with the app, drains the tasks at shutdown.
    lifespan=offload.lifespan(offload.OffloadConfig(process_workers=2)),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
