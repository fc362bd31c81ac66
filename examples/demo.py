"""make demo: a Starlette app whose responses schedule background tasks on every executor.

One request per executor goes through the app; the tasks run after each response is sent,
and every task's report is printed as it ends.
"""

from __future__ import annotations

import hashlib
import sys
import time

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import offload
from offload.executors import executor_names


def checksum(rounds: int) -> str:
    """CPU-bound work: hash a buffer over and over."""
    digest = b"offload"
    for _ in range(rounds):
        digest = hashlib.sha256(digest * 64).digest()
    return digest.hex()[:12]


async def notify(user: str) -> None:
    """I/O-bound work: wait as a call to a mail server would."""
    await anyio.sleep(0.05)


def flaky_audit(entry: str) -> None:
    raise RuntimeError(f"audit store unavailable for {entry!r}")


async def order(request: Request) -> JSONResponse:
    executor = request.path_params["executor"]
    tasks = offload.BackgroundTasks(executor=executor, on_error="continue")
    tasks.add_task(checksum, 20_000).set(name=f"checksum on {executor}")
    tasks.add_task(notify, "ada").set(name=f"notify on {executor}")
    tasks.add_task(flaky_audit, "order 7").set(name=f"audit on {executor}")
    return JSONResponse({"executor": executor}, background=tasks)  # type: ignore[arg-type]


def show(report: offload.TaskReport) -> None:
    error = f"  {type(report.error).__name__}: {report.error}" if report.error else ""
    print(f"  {report.name:<22} {report.status:<10} {report.duration * 1000:7.1f} ms{error}")


async def main() -> None:
    app = Starlette(routes=[Route("/order/{executor}", order, methods=["POST"])])
    config = offload.OffloadConfig(on_report=show)
    executors = [name for name in executor_names() if name != "auto"]
    async with offload.Runtime(config):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            for executor in executors:
                print(f"\nPOST /order/{executor}")
                start = time.perf_counter()
                response = await client.post(f"/order/{executor}")
                print(f"  -> {response.status_code} {response.json()} (request and its tasks: "
                      f"{(time.perf_counter() - start) * 1000:.0f} ms)")  # fmt: skip


if __name__ == "__main__":
    # The audit task fails on purpose; its traceback goes to the offload logger, not here.
    import logging

    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    anyio.run(main)
