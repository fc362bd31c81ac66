"""The Ravyn app the tests serve: handler-level tasks, Ravyn's response data structures
(``Redirect``, ``Stream``, ``File``) and responses given ``offload.ravyn``'s tasks, and
Ravyn's own tasks given to offload's ``backgrounds=``. Each task leaves a mark
(``lilya_marks``) in the directory the app is made for."""

# No `from __future__ import annotations`: Ravyn reads the handlers' return
# annotations unevaluated, and would take the string "Redirect" for data.

from collections.abc import Callable
from pathlib import Path

from lilya_marks import write_mark, write_mark_async
from ravyn import Gateway, Ravyn, get
from ravyn import background as ravyn_background
from ravyn.core.datastructures import File, Redirect, Stream
from ravyn.responses import JSONResponse

import offload
from offload import TaskReport
from offload.lilya import PlainText
from offload.ravyn import BackgroundTask, BackgroundTasks


def make_app(marks: str, on_report: Callable[[TaskReport], object]) -> Ravyn:
    """Return the app, leaving its marks in ``marks``, with a runtime (one worker process)
    that hands each report to ``on_report``."""

    # Ravyn's decorators are untyped: applied as calls, mypy keeps the functions' types.
    background = BackgroundTasks(
        [
            BackgroundTask(write_mark, marks, "sync"),
            BackgroundTask(write_mark_async, marks, "async"),
            BackgroundTask(write_mark, marks, "process").set(executor="process"),
        ]
    )

    async def handler() -> dict[str, str]:
        return {"route": "handler"}

    async def redirect() -> Redirect:
        task = BackgroundTask(write_mark, marks, "redirect").set(executor="process")
        return Redirect(path="/handler", background=task)

    async def stream() -> Stream:
        task = BackgroundTask(write_mark_async, marks, "stream")
        return Stream(iterator=iter([b"a", b"b"]), background=task)

    async def file() -> File:
        task = BackgroundTask(write_mark, marks, "file")
        return File(path=Path(__file__), filename="app.py", background=task)

    async def json() -> JSONResponse:
        tasks = BackgroundTasks(on_error="continue")
        tasks.add_task(write_mark, marks, "json").set(executor="process")
        return JSONResponse({"route": "json"}, background=tasks)

    async def ravyn_tasks() -> PlainText:
        # Ravyn's own classes, given to offload's backgrounds=.
        group = ravyn_background.BackgroundTasks(as_group=True)
        group.add_task(write_mark, marks, "sync")
        group.add_task(write_mark_async, marks, "async")
        return PlainText(
            "ravyn tasks",
            backgrounds=[
                group,
                ravyn_background.BackgroundTask(write_mark, marks, "process"),
            ],
            executor=lambda task: "process" if task.args[1] == "process" else None,
        )

    handlers = [
        get("/handler", background=background)(handler),
        get("/redirect", status_code=307)(redirect),
        get("/stream")(stream),
        get("/file")(file),
        get("/json")(json),
        get("/ravyn-tasks")(ravyn_tasks),
    ]
    return Ravyn(
        routes=[Gateway(handler=route) for route in handlers],
        lifespan=offload.lifespan(offload.OffloadConfig(process_workers=1, on_report=on_report)),
    )
