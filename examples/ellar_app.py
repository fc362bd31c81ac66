"""An Ellar app whose handler gets offload's task list injected.

Run it with ``python examples/ellar_app.py``, then
``curl -X POST localhost:8000/reports/42``: the answer comes at once; then the
audit line is written in a thread, the notification goes out on the event loop,
and the report is rendered in a worker process, so the server keeps answering.
"""

from __future__ import annotations

import hashlib

import uvicorn
from ellar.app import AppFactory
from ellar.common import ModuleRouter

import offload
from offload.ellar import BackgroundTasks  # registers it with Ellar

router = ModuleRouter()


def audit(report_id: int) -> None:  # sync: a thread of offload's own pool
    print(f"report {report_id}: audit logged", flush=True)


async def notify(report_id: int) -> None:  # async: awaited on the event loop
    print(f"report {report_id}: notification sent", flush=True)


def render_report(report_id: int) -> None:  # CPU-heavy: a worker process
    digest = str(report_id).encode()
    for _ in range(300_000):
        digest = hashlib.sha256(digest).digest()
    print(f"report {report_id} rendered in a worker process", flush=True)


@router.post("/reports/{report_id:int}")
def create_report(report_id: int, tasks: BackgroundTasks) -> dict[str, object]:
    tasks.add_task(audit, report_id)
    tasks.add_task(notify, report_id)
    tasks.add_task(render_report, report_id).set(executor="process", timeout=60)
    return {"report": report_id, "status": "accepted"}


# The lifespan starts the worker processes and drains the tasks at shutdown.
lifespan = offload.lifespan(offload.OffloadConfig(process_workers=2))
app = AppFactory.create_app(
    routers=[router],
    config_module={"DEFAULT_LIFESPAN_HANDLER": lifespan},
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
