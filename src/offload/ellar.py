"""Ellar handlers get offload's ``BackgroundTasks`` injected, once this module is imported.

::

    from offload.ellar import BackgroundTasks  # importing it registers it with Ellar

    @router.post("/reports/{report_id:int}")
    def create_report(report_id: int, tasks: BackgroundTasks) -> dict[str, int]:
        tasks.add_task(render_pdf, report_id).set(executor="process")
        return {"id": report_id}

A parameter annotated ``BackgroundTasks``, ``Inject[BackgroundTasks]`` or a string that
names it (offload's class, from this module or from ``offload``) gets the request's
offload list, which runs after the response through offload's executors. Import this module
before the handlers are defined: Ellar reads ``Inject[...]`` there.

How it works: Ellar keeps a response per request (in the ASGI scope) whose ``background``
it copies to the response it builds from the handler's return value, and it injects
Starlette's ``BackgroundTasks`` by replacing that ``background`` with a Starlette list,
dropping whatever it cannot add to. The request's offload list (one per request: every
parameter, and :func:`request_backgrounds` in a middleware, get the same) therefore joins
a Starlette list there as one task, which Ellar's own injection keeps; and a handler that
still asks for Starlette's ``BackgroundTasks`` gets Ellar's list as before, with what a
middleware put on the response (an offload list or task) kept in it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ._exceptions import missing_extra

try:
    from ellar.common import IExecutionContext, IHostContext
    from ellar.common.params import SystemParameterResolver, add_default_resolver
    from ellar.common.params.resolvers.base import ResolverResult
    from ellar.common.params.resolvers.system_parameters import BackgroundTasksParameter
    from starlette.background import BackgroundTask as StarletteTask
    from starlette.background import BackgroundTasks as StarletteTasks
    from starlette.responses import Response
except ImportError as exc:
    raise missing_extra("offload.ellar", "Ellar", "ellar", exc) from exc

from ._task import BackgroundTask, BackgroundTasks

__all__ = ["BackgroundTask", "BackgroundTasks", "request_backgrounds"]

#: Where the request's offload list is kept, as ``offload.fastapi`` keeps its own.
_SCOPE_KEY = "offload.backgrounds"


def request_backgrounds(context: IHostContext) -> BackgroundTasks:
    """Return the request's offload task list, which runs after the response.

    Handlers get it by annotation; this is for Ellar middleware, guards and interceptors,
    so that what they add runs with the handler's tasks::

        @middleware()
        async def audit(cls, context: IHostContext, call_next: Callable[..., Any]) -> None:
            request_backgrounds(context).add_task(write_audit_log)
            await call_next()

    An offload list that a middleware put on Ellar's response itself
    (``context.switch_to_http_connection().get_response().background``) is the one
    returned, and injected.

    :param context: the request's Ellar context
    :raises HostContextException: if the connection is no HTTP request (a WebSocket)
    """
    connection = context.switch_to_http_connection()
    response = connection.get_response()  # Ellar's per-request one, made on first use
    return _request_list(connection.get_client().scope, response)


def _request_list(scope: MutableMapping[str, Any], response: Response) -> BackgroundTasks:
    tasks = scope.get(_SCOPE_KEY)
    if not isinstance(tasks, BackgroundTasks):
        current = response.background
        if isinstance(current, BackgroundTasks):  # put there by a middleware
            tasks = current
        elif isinstance(current, StarletteTasks):  # Ellar's: offload's list joins it below
            tasks = BackgroundTasks()
        elif isinstance(current, BackgroundTask | StarletteTask):
            # One task put there, as Ellar's docs do: the first of the list, run by offload.
            tasks = BackgroundTasks([current])
            response.background = None
        else:
            tasks = BackgroundTasks()
        scope[_SCOPE_KEY] = tasks
    ellar_tasks = _ellar_list(response)
    if not any(task.func is tasks for task in ellar_tasks.tasks):
        ellar_tasks.add_task(tasks)
    return tasks


def _ellar_list(response: Response) -> StarletteTasks:
    """Return the Starlette list on Ellar's response, putting what was there first in it:
    Ellar's own injection keeps a Starlette list, and replaces anything else."""
    current = response.background
    if isinstance(current, StarletteTasks):
        return current
    ellar_tasks = StarletteTasks()
    if current is not None:
        ellar_tasks.add_task(current)
    response.background = ellar_tasks
    return ellar_tasks


class _OffloadTasksParameter(SystemParameterResolver):
    """Ellar's resolver of parameters annotated with offload's ``BackgroundTasks``."""

    async def resolve(self, ctx: IExecutionContext, **kwargs: Any) -> ResolverResult:
        tasks = request_backgrounds(ctx)
        return ResolverResult({self.parameter_name: tasks}, [], self.create_raw_data(tasks))


class _EllarTasksParameter(BackgroundTasksParameter):
    """Ellar's own resolver of Starlette's ``BackgroundTasks``, which keeps an offload list
    or task that a middleware put on the response instead of replacing it."""

    async def resolve(self, ctx: IExecutionContext, **kwargs: Any) -> ResolverResult:
        connection = ctx.switch_to_http_connection()
        response = connection.get_response()
        current = response.background
        if isinstance(current, BackgroundTasks):
            _request_list(connection.get_client().scope, response)
        elif not (current is None or isinstance(current, StarletteTask)):
            _ellar_list(response)
        return await super().resolve(ctx, **kwargs)


add_default_resolver(BackgroundTasks, _OffloadTasksParameter)
add_default_resolver(StarletteTasks, _EllarTasksParameter)
