"""The Ellar app that tests/frameworks/test_ellar.py serves with uvicorn.

Each route adds tasks that leave files in the folder the request names (``?marks=...``);
``?put=`` makes the module's middleware put tasks on the request first. No
``from __future__ import annotations`` here: a string annotation is written as one.
"""

import os
from collections.abc import Awaitable, Callable
from typing import Any

from ellar.app import App, AppFactory
from ellar.common import IHostContext, Inject, Module, ModuleRouter, middleware
from ellar.common import JSONResponse as EllarJSONResponse
from ellar.core import ModuleBase
from ellar_tasks import mark, mark_async, mark_when_told
from starlette.background import BackgroundTask as StarletteTask
from starlette.background import BackgroundTasks as StarletteTasks

import offload
from offload.ellar import BackgroundTask, BackgroundTasks, request_backgrounds
from offload.starlette import JSONResponse

#: Every task report of the runtime the app's lifespan enters, in the order they ended.
REPORTS: list[offload.TaskReport] = []

router = ModuleRouter()


def add_three(tasks: BackgroundTasks, marks: str) -> None:
    """Add a sync, an async and a process task to ``tasks``."""
    tasks.add_task(mark, marks, "sync")
    tasks.add_task(mark_async, marks, "async")
    tasks.add_task(mark, marks, "process").set(executor="process")


@router.post("/annotated")
def annotated(marks: str, tasks: BackgroundTasks) -> dict[str, Any]:
    found = [task.name for task in tasks.tasks]  # what a middleware put there
    add_three(tasks, marks)
    return {"pid": os.getpid(), "type": type(tasks).__module__, "found": found}


@router.post("/inject")
def inject(marks: str, tasks: Inject[BackgroundTasks]) -> dict[str, Any]:
    add_three(tasks, marks)
    return {"pid": os.getpid(), "type": type(tasks).__module__}


# Ellar resolves a string annotation in the handler's module: offload's class here.
@router.post("/string")
def string(marks: str, tasks: "BackgroundTasks") -> dict[str, Any]:
    add_three(tasks, marks)
    return {"pid": os.getpid(), "type": type(tasks).__module__}


@router.post("/after-response")
def after_response(marks: str, tasks: BackgroundTasks) -> dict[str, Any]:
    tasks.add_task(mark_when_told, marks, "done")
    return {"pid": os.getpid()}


@router.post("/ellar")
def ellar(marks: str, tasks: StarletteTasks) -> dict[str, Any]:
    tasks.add_task(mark, marks, "ellar")
    return {"pid": os.getpid(), "type": type(tasks).__module__}


# Ellar resolves a string inside Inject[...] in its own module: Starlette's class.
@router.post("/ellar-string")
def ellar_string(marks: str, tasks: Inject["BackgroundTasks"]) -> dict[str, Any]:
    tasks.add_task(mark, marks, "ellar")
    return {"pid": os.getpid(), "type": type(tasks).__module__}


@router.post("/both")
def both(
    marks: str, ellar: StarletteTasks, tasks: BackgroundTasks, again: Inject[BackgroundTasks]
) -> dict[str, Any]:
    ellar.add_task(mark, marks, "ellar")
    tasks.add_task(mark, marks, "offload")
    return {"shared": tasks is again}


@router.post("/response-background")
def response_background(marks: str, kind: str, tasks: BackgroundTasks) -> EllarJSONResponse:
    add_three(tasks, marks)
    # A response the handler returns replaces the one Ellar would build: the list goes in it.
    if kind == "offload":  # Ellar's class with offload's mixin: typed to take the list
        return JSONResponse({"pid": os.getpid()}, background=tasks)
    # Starlette's annotation names its own task class, yet it only awaits what it is given.
    return EllarJSONResponse({"pid": os.getpid()}, background=tasks)  # type: ignore[arg-type]


def choose(task: BackgroundTask) -> str | None:
    """Send ``mark`` to a worker process: a chooser sees the function of a Starlette task."""
    return "process" if task.func is mark else None


@router.post("/starlette-tasks")
def starlette_tasks(marks: str) -> JSONResponse:
    ellar_list = StarletteTasks()
    ellar_list.add_task(mark_async, marks, "async")
    return JSONResponse(
        {"pid": os.getpid()},
        backgrounds=[StarletteTask(mark, marks, "process"), ellar_list],
        executor=choose,
    )


@Module(routers=[router])
class TasksModule(ModuleBase):
    """Its middleware puts a task on the request before the handler runs, as ``?put=``
    says: in an offload list or as an offload task on Ellar's response, or through
    ``request_backgrounds``."""

    @middleware()
    async def put_tasks(
        cls, context: IHostContext, call_next: Callable[[], Awaitable[None]]
    ) -> None:
        connection = context.switch_to_http_connection()
        query = connection.get_request().query_params
        put, marks = query.get("put"), query.get("marks", "")
        if put == "list":
            # Starlette's annotation names its own task classes: untyped apps do this.
            response = connection.get_response()
            response.background = BackgroundTasks(  # type: ignore[assignment]
                [BackgroundTask(mark, marks, "middleware")]
            )
        elif put == "task":
            task = BackgroundTask(mark, marks, "middleware")
            connection.get_response().background = task  # type: ignore[assignment]
        elif put == "helper":
            request_backgrounds(context).add_task(mark, marks, "middleware")
        await call_next()


def create_app() -> App:
    """Return the app, its lifespan running an offload runtime that records its reports."""
    config = offload.OffloadConfig(process_workers=1, on_report=REPORTS.append)
    return AppFactory.create_app(
        modules=[TasksModule],
        config_module={"DEFAULT_LIFESPAN_HANDLER": offload.lifespan(config)},
    )
