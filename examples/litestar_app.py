"""A Litestar app whose background tasks run through offload.

Run it with ``python examples/litestar_app.py``, then
``curl -X POST localhost:8000/reports/42``: the answer comes at once; then the
audit is logged in a thread, the report renders in a worker process (so the
server keeps answering meanwhile), and the notification goes out on the loop.
"""

from __future__ import annotations

import hashlib
import os

import uvicorn
from litestar import Litestar, post
from litestar.background_tasks import BackgroundTask as LitestarTask
from litestar.params import FromPath

import offload
from offload import BackgroundTask, task_options
from offload.litestar import Response


def log_audit(report_id: int) -> None:  # sync: a thread of offload's pool
    print(f"report {report_id}: audit logged", flush=True)


@task_options(executor="process", timeout=60)  # CPU-heavy: a worker process
def render_report(report_id: int) -> None:
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered in process {os.getpid()}", flush=True)


async def notify(report_id: int) -> None:  # async: runs on the event loop
    print(f"report {report_id}: notification sent", flush=True)


@post("/reports/{report_id:int}")
async def create_report(
    report_id: FromPath[int],
) -> Response[dict[str, object]]:
    return Response(
        {"report": report_id, "status": "accepted"},
        backgrounds=[
            LitestarTask(log_audit, report_id),  # Litestar's own tasks work too
            BackgroundTask(render_report, report_id),
            BackgroundTask(notify, report_id),
        ],
        on_error="continue",  # a failure is logged; the rest still run
    )


app = Litestar(
    [create_report],
    # Starts the process pool with the app, drains running tasks at shutdown.
    lifespan=[offload.lifespan(offload.OffloadConfig(process_workers=2))],
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
