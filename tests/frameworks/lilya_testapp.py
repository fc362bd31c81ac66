"""The Lilya app the tests serve: each route's response has a sync, an async and a process
task that leave marks (``lilya_marks``) in the directory the request names."""

from __future__ import annotations

from collections.abc import Callable

from lilya import responses
from lilya.apps import Lilya
from lilya.background import Task as LilyaTask
from lilya.requests import Request
from lilya.routing import Path
from lilya_marks import write_mark, write_mark_async

import offload
from offload import BackgroundTask, TaskReport
from offload.lilya import JSONResponse, Task, Tasks


async def with_backgrounds(request: Request) -> JSONResponse:
    """offload's ``backgrounds=``, given Lilya's own tasks and an offload one."""
    marks = request.query_params["marks"]
    return JSONResponse(
        {"route": "backgrounds"},
        backgrounds=[
            LilyaTask(write_mark, marks, "sync"),
            LilyaTask(write_mark_async, marks, "async"),
            BackgroundTask(write_mark, marks, "process").set(executor="process"),
        ],
    )


async def with_background(request: Request) -> responses.JSONResponse:
    """Lilya's own response, given ``offload.lilya.Tasks`` as its ``background=``."""
    marks = request.query_params["marks"]
    tasks = Tasks(on_error="continue")
    tasks.add_task(write_mark, marks, "sync")
    tasks.add_task(write_mark_async, marks, "async")
    tasks.add_task(write_mark, marks, "process").set(executor="process")
    return responses.JSONResponse({"route": "background"}, background=tasks)


async def with_task(request: Request) -> responses.PlainText:
    """Lilya's own response, given one ``offload.lilya.Task``."""
    marks = request.query_params["marks"]
    task = Task(write_mark, marks, "process").set(executor="process")
    return responses.PlainText("task", background=task)


def make_app(on_report: Callable[[TaskReport], object]) -> Lilya:
    """Return the app, with a runtime (one worker process) that hands each report to
    ``on_report``."""
    config = offload.OffloadConfig(process_workers=1, on_report=on_report)
    return Lilya(
        routes=[
            Path("/backgrounds", with_backgrounds),
            Path("/background", with_background),
            Path("/task", with_task),
        ],
        lifespan=offload.lifespan(config),
    )
