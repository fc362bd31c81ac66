"""Lilya's task classes and responses, with their tasks run by offload.

::

    from offload.lilya import JSONResponse, Task, Tasks

    tasks = Tasks(as_group=True, on_error="continue")
    tasks.add_task(send_mail, "ada@example.com")
    tasks.add_task(render_pdf, 42).set(executor="process", timeout=60)
    return JSONResponse({"ok": True}, background=tasks)

    # or offload's backgrounds=, which also takes Lilya's own Task and Tasks:
    return JSONResponse({"ok": True}, backgrounds=[Task(send_mail, to)], executor="process")

:class:`Task` and :class:`Tasks` are subclasses of Lilya's, so that every ``background=``
typed or checked for Lilya's classes takes them (Ravyn's and Esmerald's are built on them),
but awaiting one runs it through offload: its executor, ``thread_limit``, timeouts,
retries, error policy and reports. The responses are Lilya's own, with
:class:`~offload.responses.BackgroundsMixin` in front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, Self

from ._exceptions import missing_extra

try:
    from lilya import background as _background
    from lilya import responses as _lilya
except ImportError as exc:
    raise missing_extra("offload.lilya", "Lilya", "lilya", exc) from exc

from ._config import Concurrency, OnError
from ._options import ExecutorSpec
from ._report import TaskReport
from ._task import BackgroundTask, BackgroundTasks, ExecutorChoice
from .responses import BackgroundsMixin

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainText",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
    "Task",
    "Tasks",
]

P = ParamSpec("P")


class Task(_background.Task):
    """Lilya's ``Task``, run by offload: ``func(*args, **kwargs)`` after the response.

    :meth:`set` chooses its executor, timeout, retries and name as on
    :class:`offload.BackgroundTask`, and returns the task.

    :raises TypeError: if ``func`` is not callable, or is a coroutine object
    """

    # The offload task that does the work; offload's lists take it from here (with its options).
    __slots__ = ("__offload__",)
    __offload__: BackgroundTask

    def __init__(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        self.__offload__ = BackgroundTask(func, *args, **kwargs)
        # Lilya's attributes, for code that reads them; the function itself, not an adapter.
        self.func = func
        # Lilya types these with its own ParamSpec, which no other signature can match.
        self.args, self.kwargs = args, kwargs  # type: ignore[assignment]

    def set(
        self,
        *,
        executor: ExecutorSpec | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        name: str | None = None,
    ) -> Self:
        """Set this task's options in place and return it; see
        :meth:`offload.BackgroundTask.set`."""
        self.__offload__.set(executor=executor, timeout=timeout, retries=retries, name=name)
        return self

    @property
    def name(self) -> str:
        """The name reports and logs show."""
        return self.__offload__.name

    async def __call__(self) -> None:
        await self.__offload__()

    def __repr__(self) -> str:
        # Not Lilya's, which shows the arguments: they may hold secrets.
        return f"<{type(self).__name__} {self.name!r}>"

    __str__ = __repr__


class Tasks(_background.Tasks):
    """Lilya's ``Tasks``, run by offload: in order, or all at once with ``as_group=True``
    (offload's ``concurrency="group"``).

    :param tasks: what :class:`offload.BackgroundTasks` takes: offload's tasks, Lilya's,
        their lists, zero-argument callables
    :param as_group: run the tasks at once, unless ``concurrency`` says otherwise
    :param executor: the executor of the tasks that choose none themselves
    :param on_error: the error policy of this list; the config's when ``None``
    :param concurrency: ``"sequential"`` or ``"group"``, over ``as_group``
    :param detach: hand the list to the running :class:`~offload.Runtime` when awaited
    :raises ConfigError: if ``on_error`` or ``concurrency`` is not a known value
    :raises ExecutorNotFound: if ``executor`` is an unknown name
    """

    __slots__ = ("__offload__",)
    __offload__: BackgroundTasks

    def __init__(
        self,
        tasks: Iterable[object] | None = None,
        as_group: bool = False,
        *,
        executor: ExecutorChoice | None = None,
        on_error: OnError | None = None,
        concurrency: Concurrency | None = None,
        detach: bool | None = None,
    ) -> None:
        if concurrency is None and as_group:
            concurrency = "group"
        self.__offload__ = BackgroundTasks(
            tasks, executor=executor, on_error=on_error, concurrency=concurrency, detach=detach
        )

    # Read from the offload list, so that what the tasks given as a Lilya list asked for counts.
    @property
    def as_group(self) -> bool:
        """Whether the tasks run at once (``concurrency="group"``)."""
        return self.__offload__.concurrency == "group"

    @as_group.setter
    def as_group(self, value: bool) -> None:
        self.__offload__.concurrency = "group" if value else "sequential"

    # Offload's tasks, which carry their options, where Lilya's list holds Lilya's tasks: both
    # are awaited the same way.
    @property
    def tasks(self) -> list[BackgroundTask]:  # type: ignore[override]
        """The list's offload tasks, in order."""
        return self.__offload__.tasks

    # Returns the task, for .set(...), where Lilya's returns None.
    def add_task(  # type: ignore[override]
        self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> BackgroundTask:
        """Append ``func(*args, **kwargs)`` and return the new task (for ``.set(...)``).

        :raises TypeError: if ``func`` is not callable, or is a coroutine object
        :raises NotPicklable: if the task goes to a process executor and cannot be pickled
        """
        return self.__offload__.add_task(func, *args, **kwargs)

    @property
    def reports(self) -> list[TaskReport]:
        """One :class:`~offload.TaskReport` per task once the last run has ended."""
        return self.__offload__.reports

    async def __call__(self) -> None:
        await self.__offload__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {[task.name for task in self.tasks]!r}>"

    __str__ = __repr__


class Response(BackgroundsMixin, _lilya.Response):
    """Lilya's ``Response`` whose background tasks run through offload."""


class PlainText(BackgroundsMixin, _lilya.PlainText):
    """Lilya's ``PlainText`` whose background tasks run through offload."""


class HTMLResponse(BackgroundsMixin, _lilya.HTMLResponse):
    """Lilya's ``HTMLResponse`` whose background tasks run through offload."""


class JSONResponse(BackgroundsMixin, _lilya.JSONResponse):
    """Lilya's ``JSONResponse`` whose background tasks run through offload."""


class RedirectResponse(BackgroundsMixin, _lilya.RedirectResponse):
    """Lilya's ``RedirectResponse`` whose background tasks run through offload."""


class StreamingResponse(BackgroundsMixin, _lilya.StreamingResponse):
    """Lilya's ``StreamingResponse``; its background tasks run through offload once the
    stream has ended."""


class FileResponse(BackgroundsMixin, _lilya.FileResponse):
    """Lilya's ``FileResponse``; its background tasks run through offload once the file
    has been sent."""
