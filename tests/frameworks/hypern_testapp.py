"""A Hypern app whose responses' background tasks run through offload, and its tasks.

Served by Hypern's own server in a subprocess (:func:`main`), with ``tests/frameworks`` on
``PYTHONPATH`` so that offload's worker processes import the task functions by name. Each
task leaves a mark: a JSON file, in the directory ``$HYPERN_MARKS``, that says where it ran;
:func:`main` also makes the config's ``on_report`` append each report there.

Hypern's stubs type a response's ``backgrounds=`` as a list of its own task class, which
offload's cannot subclass (a Rust class), though Hypern reads only their ``function``,
``args``, ``kwargs`` and ``timeout_secs``: hence :func:`respond`'s ``list[Any]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import hypern
from hypern import Hypern, Route
from hypern.response import JSONResponse

import offload
from offload.hypern import BackgroundTask, BackgroundTasks

#: Hypern's task class, called as it really is: ``HypernTask(function, args=None,
#: kwargs=None, timeout_secs=None)``; its stub gives it a dataclass's constructor instead.
HypernTask = cast("Callable[..., hypern.BackgroundTask]", hypern.BackgroundTask)

#: The file the config's ``on_report`` appends a JSON line to, for each report.
REPORTS = "reports.jsonl"


class TaskFailed(Exception):
    """Raised by :func:`fail`."""


def where() -> dict[str, Any]:
    """Say where the caller runs: its process, its thread, whether an event loop runs there."""
    try:
        asyncio.get_running_loop()
        loop = True
    except RuntimeError:
        loop = False
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "loop": loop,
        "at": time.time(),
    }


def mark(path: str) -> None:
    """Leave a mark at ``path``: a sync task."""
    Path(path).write_text(json.dumps(where()))


async def mark_async(path: str) -> None:
    """Leave a mark at ``path``: an async task."""
    await anyio.Path(path).write_text(json.dumps(where()))


def mark_after(seconds: float, path: str) -> None:
    """Leave a mark at ``path`` once ``seconds`` have passed, with when it started."""
    started = time.time()
    time.sleep(seconds)
    Path(path).write_text(json.dumps({**where(), "started": started}))


def mark_then_sleep(path: str, seconds: float) -> None:
    """Leave a mark at ``path`` at once, then sleep: a task still running when stopped."""
    Path(path).write_text(json.dumps(where()))
    time.sleep(seconds)


def fail(message: str) -> None:
    """Fail with ``message``."""
    raise TaskFailed(message)


def on_process(task: offload.BackgroundTask) -> str | None:
    """A chooser: the process executor for :func:`mark_then_sleep` and :func:`mark`'s
    process twin, the config's for the rest."""
    return "process" if task.func is mark_in_process else None


def mark_in_process(path: str) -> None:
    """Leave a mark at ``path``; :func:`on_process` sends it to a worker process."""
    mark(path)


def write_report(report: offload.TaskReport) -> None:
    """Append ``report`` to the reports file of ``$HYPERN_MARKS`` (the config's on_report)."""
    line = {
        "id": report.id,
        "name": report.name,
        "executor": report.executor,
        "status": report.status,
        "attempts": report.attempts,
    }
    with (_marks() / REPORTS).open("a") as reports:
        reports.write(json.dumps(line) + "\n")


def _marks() -> Path:
    return Path(os.environ["HYPERN_MARKS"])


def _mark_path(request: hypern.Request, name: str) -> str:
    # Each request names its marks, so that one server serves several checks.
    prefix = request.query_params.to_dict().get("run", ["0"])[0]
    return str(_marks() / f"{prefix}-{name}.json")


def respond(backgrounds: list[Any]) -> Any:
    """Answer where the endpoint ran, with ``backgrounds`` for Hypern to call."""
    return JSONResponse(where(), backgrounds=backgrounds)


route = Route("/")


@route.get("/tasks")
def tasks(request: hypern.Request) -> Any:
    """A sync, an async and a process task, each given to Hypern on its own."""
    return respond(
        [
            BackgroundTask(mark, _mark_path(request, "sync")),
            BackgroundTask(mark_async, _mark_path(request, "async")),
            BackgroundTask(mark, _mark_path(request, "process")).set(executor="process"),
        ]
    )


@route.get("/hypern-tasks")
async def hypern_tasks(request: hypern.Request) -> Any:
    """Hypern's own task objects, run by offload as one list with a chooser."""
    own = [
        HypernTask(mark, args=[_mark_path(request, "own-thread")], kwargs={}),
        HypernTask(mark_in_process, kwargs={"path": _mark_path(request, "own-process")}),
    ]
    return respond([BackgroundTasks(own, executor=on_process)])


@route.get("/list")
def task_list(request: hypern.Request) -> Any:
    """A list run in order with its own error policy: a slow task, a failure, a mark."""
    in_order = [
        BackgroundTask(mark_after, 0.3, _mark_path(request, "first")),
        BackgroundTask(fail, "failed on purpose"),
        BackgroundTask(mark, _mark_path(request, "last")),
    ]
    return respond([BackgroundTasks(in_order, on_error="continue")])


@route.get("/timeout")
def timeout(request: hypern.Request) -> Any:
    """A process task that runs out of time, and one that runs after it."""
    slow = BackgroundTask(mark_then_sleep, _mark_path(request, "slow"), 60)
    after = BackgroundTask(mark, _mark_path(request, "after"))
    slow.set(executor="process", timeout=1)
    return respond([BackgroundTasks([slow, after], on_error="continue")])


@route.get("/long")
def long(request: hypern.Request) -> Any:
    """A process task still running when the server is stopped."""
    task = BackgroundTask(mark_then_sleep, _mark_path(request, "long"), 60)
    return respond([task.set(executor="process")])


app = Hypern(routes=[route])


def main() -> None:
    """Serve the app with Hypern's server; ``--port`` comes from the command line."""
    offload.configure(offload.OffloadConfig(on_report=write_report, process_workers=2))
    app.start()  # type: ignore[no-untyped-call]  # Hypern leaves it unannotated
