"""Follow a task after the response: a CPU-heavy report in a worker process, with progress.

Run it with ``python examples/fastapi_progress.py``, then:

- ``curl -X POST localhost:8000/reports/20`` answers 202 with the task's id at once;
- ``curl localhost:8000/tasks/ID`` shows its progress rising to 20, then its result;
- ``curl -X DELETE localhost:8000/tasks/ID`` cancels it (its worker process is killed).
"""

from __future__ import annotations

import hashlib

import uvicorn
from fastapi import FastAPI

import offload
from offload.fastapi import Backgrounds


def render_report(pages: int) -> dict[str, object]:
    digest = b"report"
    for page in range(1, pages + 1):
        for _ in range(100_000):  # a page's worth of CPU-heavy work
            digest = hashlib.sha256(digest).digest()
        offload.set_progress(page, pages, f"page {page} of {pages}")
    return {"pages": pages, "digest": digest.hex()[:16]}


# detach=True: the tasks run on the app's runtime, not in the request.
config = offload.OffloadConfig(detach=True)
app = FastAPI(lifespan=offload.lifespan(config))
app.mount("/tasks", offload.status_app())


@app.post("/reports/{pages}", status_code=202)
async def create_report(pages: int, tasks: Backgrounds) -> dict[str, str]:
    task = tasks.add_task(render_report, pages).set(executor="process")
    return {"id": task.id, "status": f"/tasks/{task.id}"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
