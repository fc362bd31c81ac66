"""A Ravyn app whose background tasks run through offload.

Run it with ``python examples/ravyn_app.py``, then
``curl -X POST localhost:8000/reports/42``: the answer comes at once; then
the audit runs in a thread of offload's own pool, the report renders in a
worker process (the server keeps answering), and the notification goes out
on the event loop.
"""

# No `from __future__ import annotations`: Ravyn reads the handlers' return
# annotations unevaluated, and would take the string "Redirect" for data.

import hashlib

import uvicorn
from ravyn import Gateway, Ravyn, post
from ravyn.responses import JSONResponse

import offload
from offload.ravyn import BackgroundTasks


def audit(report_id: int) -> None:  # sync: a thread of offload's pool
    print(f"report {report_id}: audited", flush=True)


def render_report(report_id: int) -> None:  # CPU-heavy: a worker process
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered: {digest.hex()[:16]}", flush=True)


async def notify(report_id: int) -> None:  # async: on the event loop
    print(f"report {report_id}: notification sent", flush=True)


# Ravyn 0.4's decorators are untyped, which mypy --strict reports.
@post("/reports/{report_id:int}")  # type: ignore[untyped-decorator]
async def create_report(report_id: int) -> JSONResponse:
    # Ravyn's own class, so Ravyn's responses and handlers take it.
    tasks = BackgroundTasks(on_error="continue")  # a failure is logged
    tasks.add_task(audit, report_id)
    render = tasks.add_task(render_report, report_id)
    render.set(executor="process", timeout=60)
    tasks.add_task(notify, report_id)
    accepted = {"report": report_id, "status": "accepted"}
    return JSONResponse(accepted, background=tasks)


app = Ravyn(
    routes=[Gateway(handler=create_report)],
    # Starts the worker processes with the app, drains the tasks at shutdown.
    lifespan=offload.lifespan(offload.OffloadConfig(process_workers=2)),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
