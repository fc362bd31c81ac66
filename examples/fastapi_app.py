"""A FastAPI app whose background tasks run through offload.

Run it with ``python examples/fastapi_app.py``, then ``curl -X POST localhost:8000/reports/42``:
the answer comes at once; the report is rendered afterwards in a worker process, so the server
keeps answering meanwhile, and then the notification goes out on the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

import offload
from offload import task_options
from offload.fastapi import Backgrounds


@task_options(executor="process", timeout=60)  # CPU-heavy: a worker process, never the loop
def render_report(report_id: int) -> None:
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered: {digest.hex()[:16]}", flush=True)


async def notify(report_id: int) -> None:  # async: runs on the event loop
    print(f"report {report_id}: notification sent", flush=True)


@asynccontextmanager
async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
    print("the app's own startup: open pools, clients...", flush=True)
    yield
    print("the app's own shutdown: offload has drained its tasks by now", flush=True)


config = offload.OffloadConfig(on_error="continue", process_workers=2)
app = FastAPI(lifespan=offload.lifespan(config, app_lifespan))


@app.post("/reports/{report_id}")
async def create_report(report_id: int, tasks: Backgrounds) -> dict[str, object]:
    tasks.add_task(render_report, report_id)
    tasks.add_task(notify, report_id)
    return {"report": report_id, "status": "accepted"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
