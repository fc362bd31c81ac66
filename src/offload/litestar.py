"""Litestar's responses with offload's ``backgrounds=``, under the same names.

::

    from litestar import post
    from litestar.params import FromPath

    from offload import BackgroundTask
    from offload.litestar import Response

    @post("/orders/{order_id:int}")
    async def create_order(order_id: FromPath[int]) -> Response[dict[str, int]]:
        return Response({"order": order_id},
                        backgrounds=[BackgroundTask(render_pdf, order_id)],
                        executor="process")

Each class is Litestar's own with :class:`~offload.responses.BackgroundsMixin` in front;
:class:`Response` stays generic, so handlers keep their return annotations. Give
``Litestar(response_class=Response)`` to run through offload the tasks of every handler that
returns data, handler-level ``background=`` included. :class:`BackgroundTasks` is an offload
task list that is also Litestar's, for the places typed to take only Litestar's (the route
decorators' ``background=``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from ._exceptions import missing_extra

try:
    from litestar import background_tasks as _background_tasks
    from litestar import response as _litestar
except ImportError as exc:
    raise missing_extra("offload.litestar", "Litestar", "litestar", exc) from exc

from ._config import Concurrency, OnError
from ._task import BackgroundTasks as _OffloadTasks
from ._task import ExecutorChoice
from .responses import BackgroundsMixin

__all__ = [
    "BackgroundTasks",
    "File",
    "Redirect",
    "Response",
    "ServerSentEvent",
    "Stream",
    "Template",
]

T = TypeVar("T")


class BackgroundTasks(_OffloadTasks, _background_tasks.BackgroundTasks):  # type: ignore[misc]
    """An offload task list that is also Litestar's ``BackgroundTasks``: a route decorator's
    ``background=`` takes it, and offload runs it. ``run_in_task_group=True`` runs its tasks
    at once (``concurrency="group"``), unless ``concurrency`` says otherwise.

    :param tasks: as :class:`offload.BackgroundTasks`' (Litestar's tasks included)
    """

    # misc above: Litestar types ``tasks`` as its own tasks; here they are offload's.

    def __init__(
        self,
        tasks: Iterable[object] | None = None,
        run_in_task_group: bool = False,
        *,
        executor: ExecutorChoice | None = None,
        on_error: OnError | None = None,
        concurrency: Concurrency | None = None,
        detach: bool | None = None,
    ) -> None:
        if run_in_task_group and concurrency is None:
            concurrency = "group"
        super().__init__(
            tasks,
            executor=executor,
            on_error=on_error,
            concurrency=concurrency,
            detach=detach,
        )
        self.run_in_task_group = self.concurrency == "group"


class Response(BackgroundsMixin, _litestar.Response[T]):
    """Litestar's ``Response[T]`` whose background tasks run through offload."""

    __slots__ = ()

    # Typed, so that the content's type gives ``T`` as with Litestar's own; the rest,
    # offload's arguments included, goes on by keyword as Litestar's responses take it.
    def __init__(self, content: T, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)


class Redirect(BackgroundsMixin, _litestar.Redirect):
    """Litestar's ``Redirect`` whose background tasks run through offload."""

    __slots__ = ()


class File(BackgroundsMixin, _litestar.File):
    """Litestar's ``File``; its background tasks run through offload once the file has been
    sent."""

    __slots__ = ()


class Stream(BackgroundsMixin, _litestar.Stream):
    """Litestar's ``Stream``; its background tasks run through offload once the stream has
    ended."""

    __slots__ = ()


class ServerSentEvent(BackgroundsMixin, _litestar.ServerSentEvent):
    """Litestar's ``ServerSentEvent``; its background tasks run through offload once the
    event stream has ended."""

    __slots__ = ()


class Template(BackgroundsMixin, _litestar.Template):
    """Litestar's ``Template`` whose background tasks run through offload."""

    __slots__ = ()
