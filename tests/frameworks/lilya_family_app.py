"""The app the Lilya family's tests serve (see ``lilya_family``), made with one framework's
classes: handler-level tasks, its response data structures (``Redirect``, ``Stream``,
``File``) and responses given ``offload.<framework>``'s tasks, and its own tasks given to
offload's ``backgrounds=``. Each task leaves a mark (``lilya_marks``) in the directory the app
is made for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lilya_marks import write_mark, write_mark_async

import offload
from offload import TaskReport
from offload.lilya import PlainText


@dataclass(frozen=True)
class AppParts:
    """What the app is made of, from one framework."""

    name: str
    app: Callable[..., Any]  # the application class
    gateway: Callable[..., Any]
    get: Callable[..., Any]
    background: Any  # its ``background`` module
    redirect: Callable[..., Any]
    stream: Callable[..., Any]
    file: Callable[..., Any]
    json_response: Callable[..., Any]
    task: Any  # offload.<framework>.BackgroundTask
    tasks: Any  # offload.<framework>.BackgroundTasks


def make_app(parts: AppParts, marks: str, on_report: Callable[[TaskReport], object]) -> Any:
    """Return the app, leaving its marks in ``marks``, with a runtime (one worker process)
    that hands each report to ``on_report``."""
    task, tasks = parts.task, parts.tasks
    background = tasks(
        [
            task(write_mark, marks, "sync"),
            task(write_mark_async, marks, "async"),
            task(write_mark, marks, "process").set(executor="process"),
        ]
    )

    async def handler() -> dict[str, str]:
        return {"route": "handler"}

    async def redirect() -> Any:
        marked = task(write_mark, marks, "redirect").set(executor="process")
        return parts.redirect(path="/handler", background=marked)

    async def stream() -> Any:
        marked = task(write_mark_async, marks, "stream")
        return parts.stream(iterator=iter([b"a", b"b"]), background=marked)

    async def file() -> Any:
        marked = task(write_mark, marks, "file")
        return parts.file(path=Path(__file__), filename="app.py", background=marked)

    async def json() -> Any:
        listed = tasks(on_error="continue")
        listed.add_task(write_mark, marks, "json").set(executor="process")
        return parts.json_response({"route": "json"}, background=listed)

    async def own_tasks() -> PlainText:
        # The framework's own classes, given to offload's backgrounds=.
        group = parts.background.BackgroundTasks(as_group=True)
        group.add_task(write_mark, marks, "sync")
        group.add_task(write_mark_async, marks, "async")
        return PlainText(
            f"{parts.name} tasks",
            backgrounds=[group, parts.background.BackgroundTask(write_mark, marks, "process")],
            executor=lambda task: "process" if task.args[1] == "process" else None,
        )

    # The frameworks read a handler's return annotation to know how to answer: the class
    # itself, which is the framework's here (a string would be taken for data).
    for function, returns in (
        (redirect, parts.redirect),
        (stream, parts.stream),
        (file, parts.file),
        (json, parts.json_response),
        (own_tasks, PlainText),
    ):
        function.__annotations__["return"] = returns
    handler.__annotations__["return"] = dict[str, str]
    handlers = [
        parts.get("/handler", background=background)(handler),
        parts.get("/redirect", status_code=307)(redirect),
        parts.get("/stream")(stream),
        parts.get("/file")(file),
        parts.get("/json")(json),
        parts.get(f"/{parts.name}-tasks")(own_tasks),
    ]
    return parts.app(
        routes=[parts.gateway(handler=route) for route in handlers],
        lifespan=offload.lifespan(offload.OffloadConfig(process_workers=1, on_report=on_report)),
    )
