"""Backgrounds: a FastAPI dependency whose tasks run through offload after the response.

::

    from offload.fastapi import Backgrounds

    @app.post("/reports/{report_id}")
    async def create_report(report_id: int, tasks: Backgrounds) -> dict[str, int]:
        tasks.add_task(render_pdf, report_id).set(executor="process")
        return {"id": report_id}

How it works: FastAPI injects its own ``BackgroundTasks`` class into any parameter annotated
with a subclass of Starlette's, so a subclass could not bring offload's list in. Instead
``Backgrounds`` is ``Annotated[offload.BackgroundTasks, Depends(...)]``. The dependency makes
one offload list per request (shared by the endpoint and every dependency that asks for it,
theirs first since they run first), and adds one entry to FastAPI's own per-request list that
runs it: the tasks run where FastAPI's own do, while the request's dependencies are still
open. FastAPI attaches that list to the response, unless the endpoint returns a response
with a ``background`` of its own; then the dependency, whose code after ``yield`` runs once
the response has been sent (FastAPI >= 0.118), runs the tasks itself, after the response's
own. Either way they run after the response, through offload, and are never dropped.

Under FastAPI's telemetry (``FastAPI(telemetry=...)``, FastAPI >= 0.165), each task of an
offload list run in a request, ``Backgrounds`` or a response's ``background``, runs in its own
``fastapi.background_task`` span, as FastAPI's own tasks do: a child of the request's span,
current while the task runs (on the loop or in its thread), with ``get_telemetry_data()``
answering inside it. A process or Dask task's span measures the task from the server; the
request's data cannot cross to another process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Annotated, TypeAlias

from ._exceptions import missing_extra

try:
    from fastapi import BackgroundTasks as FastAPITasks
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise missing_extra("offload.fastapi", "FastAPI", "fastapi", exc) from exc

from ._call import Call
from ._hooks import TaskHooks, TaskState, add_hooks
from ._report import TaskReport
from ._task import BackgroundTasks

#: FastAPI's own BackgroundTasks open their spans with it (FastAPI >= 0.165); it has no
#: public name, so an older or a newer FastAPI without it gets no spans, and nothing fails.
if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context

fastapi_operation: Callable[..., AbstractContextManager[None]] | None
try:
    from fastapi.telemetry import _api
    from opentelemetry import context as otel_context  # FastAPI's telemetry brings it

    fastapi_operation = _api._operation
except (ImportError, AttributeError):
    fastapi_operation = None

logger = logging.getLogger("offload")

__all__ = ["Backgrounds", "FastAPITelemetryHooks", "request_backgrounds", "telemetry_hooks"]

_SCOPE_KEY = "offload.backgrounds"


class FastAPITelemetryHooks(TaskHooks):
    """The hooks that run each task of a request under FastAPI's telemetry in its
    ``fastapi.background_task`` span; added when this module is imported.

    FastAPI decides, from the context a task runs in, whether it gets a span at all (its
    ``telemetry=`` settings, the request's exclusion, sampling); outside a request or without
    telemetry, the hooks do nothing.
    """

    #: Before other hooks: FastAPI's span opens first, so that a span another hook makes
    #: current (``offload.tracing``'s) is the innermost while the task runs.
    order = -10

    def __init__(self) -> None:
        # Kept per run (see TaskState): runs on several loops and threads keep theirs apart.
        self._parents: TaskState[Context] = TaskState("offload.fastapi.parents")
        self._operations: TaskState[tuple[AbstractContextManager[None], Token[Context]]] = (
            TaskState("offload.fastapi.operations")
        )

    def scheduled(self, task: Call, executor: str) -> None:
        if fastapi_operation is not None:
            self._parents.put(task.id, otel_context.get_current())

    def started(self, task: Call, executor: str, attempt: int) -> None:
        parent = self._parents.pop(task.id)
        if parent is None:  # a retry (one span for all of a task's attempts), or no FastAPI
            return
        assert fastapi_operation is not None
        # In the request's context, whatever another hook made current meanwhile: the span
        # is the request span's child, and FastAPI finds the request's telemetry there.
        token = otel_context.attach(parent)
        operation = fastapi_operation(name="background_task", function=task.func)
        operation.__enter__()  # current while the task runs; a thread gets a copy of it
        self._operations.put(task.id, (operation, token))

    def ended(self, report: TaskReport) -> None:
        self._parents.pop(report.id)
        started = self._operations.pop(report.id)
        if started is None:  # it never started
            return
        operation, token = started
        error = report.error
        try:
            if error is None:
                operation.__exit__(None, None, None)
            else:
                try:  # FastAPI's span records the error's type, and re-raises it
                    operation.__exit__(type(error), error, error.__traceback__)
                except BaseException as raised:
                    if raised is not error:
                        raise
        finally:
            otel_context.detach(token)

    def __repr__(self) -> str:
        return "<offload.fastapi.FastAPITelemetryHooks>"


#: The hooks this module adds for every runtime; without FastAPI's telemetry they cost about
#: 2 µs a task (``make bench``), and ``offload.remove_hooks(telemetry_hooks)`` turns
#: them off.
telemetry_hooks = FastAPITelemetryHooks()
if fastapi_operation is not None:
    add_hooks(telemetry_hooks)


class _FastAPITasksWithOffload(FastAPITasks):
    """FastAPI's own per-request list, once it holds the entry that runs the request's offload
    list: that entry gets no ``fastapi.background_task`` span of its own, since each of its
    tasks gets one (see :class:`FastAPITelemetryHooks`); FastAPI's own tasks still do."""

    async def __call__(self) -> None:
        assert fastapi_operation is not None
        for task in self.tasks:
            if getattr(task.func, _RUNS_OFFLOAD_LIST, False):
                await task()
            else:
                with fastapi_operation(name="background_task", function=task.func):
                    await task()


_RUNS_OFFLOAD_LIST = "__offload_runs_list__"


async def request_backgrounds(
    connection: HTTPConnection, fastapi_tasks: FastAPITasks
) -> AsyncIterator[BackgroundTasks]:
    """Yield the request's offload task list, and see that it runs after the response.

    Use it through :data:`Backgrounds`; it is public for ``app.dependency_overrides``.

    :param connection: the request (or WebSocket) the list belongs to
    :param fastapi_tasks: FastAPI's own per-request task list, which the response awaits
    """
    shared = connection.scope.get(_SCOPE_KEY)
    if isinstance(shared, BackgroundTasks):  # made by an earlier, uncached declaration
        yield shared
        return
    tasks = connection.scope[_SCOPE_KEY] = BackgroundTasks()
    ran = False

    async def run_backgrounds() -> None:
        nonlocal ran
        ran = True
        await tasks()

    # An entry in FastAPI's own list: the tasks run where FastAPI's own run, in the order
    # the list was asked for, while the request's dependencies are still open.
    setattr(run_backgrounds, _RUNS_OFFLOAD_LIST, True)
    if fastapi_operation is not None and type(fastapi_tasks) is FastAPITasks:
        fastapi_tasks.__class__ = _FastAPITasksWithOffload
    fastapi_tasks.add_task(run_backgrounds)
    try:
        yield tasks
    except BaseException as error:
        # The endpoint raised (no task runs, as with FastAPI's own), or the response's own
        # background did: either way these tasks will not run, and that must be said.
        if not ran and tasks.tasks:
            logger.warning(
                "Background tasks not run, since the request ended with %s: %s",
                type(error).__name__, ", ".join(task.name for task in tasks.tasks),
            )  # fmt: skip
        raise
    # Here the response has been sent. FastAPI drops its list when the endpoint returned a
    # response with a background of its own; the tasks must not be dropped with it.
    if not ran and tasks.tasks:
        await tasks()


#: Annotate an endpoint's or a dependency's parameter with it to get the request's offload
#: :class:`~offload.BackgroundTasks`: ``async def endpoint(tasks: Backgrounds)``.
Backgrounds: TypeAlias = Annotated[BackgroundTasks, Depends(request_backgrounds)]
