"""A Hypern app whose background tasks run through offload.

Run ``python examples/hypern_app.py``, then
``curl -X POST localhost:8000/reports/42``: the answer comes at once; the report
renders in a worker process, the archive is written in a thread of offload's
pool, and the notification goes out on offload's event loop, while Hypern's
server keeps answering.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from hypern import Hypern, Request
from hypern.response import JSONResponse
from hypern.routing import HTTPEndpoint, Route

import offload
from offload import task_options
from offload.hypern import BackgroundTask, BackgroundTasks


@task_options(executor="process", timeout=60)  # CPU-heavy: a worker process
def render_report(report_id: str) -> None:
    digest = report_id.encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered in process {os.getpid()}", flush=True)


def archive_report(report_id: str) -> None:  # sync: a thread of offload's pool
    print(f"report {report_id} archived", flush=True)


async def notify(report_id: str) -> None:  # async: offload's event loop
    print(f"report {report_id}: notification sent", flush=True)


class Reports(HTTPEndpoint):
    def post(self, request: Request) -> Any:
        report_id = request.path_params["report_id"]
        tasks = BackgroundTasks(on_error="continue")  # in order; all run
        tasks.add_task(render_report, report_id)
        tasks.add_task(archive_report, report_id)
        # Any: Hypern's stubs name only its own task class, though Hypern reads
        # just the attributes offload's tasks have.
        backgrounds: list[Any] = [tasks, BackgroundTask(notify, report_id)]
        answer = {"report": report_id, "status": "accepted"}
        return JSONResponse(answer, backgrounds=backgrounds)


app = Hypern(routes=[Route("/reports/:report_id", Reports)])


def main(port: int = 8000) -> None:
    """Serve the app with Hypern's server on 127.0.0.1:port (not its 5000)."""
    offload.configure(offload.OffloadConfig(process_workers=2))
    app.args.port = port
    app.start()  # type: ignore[no-untyped-call]  # untyped in Hypern


if __name__ == "__main__":
    main()
