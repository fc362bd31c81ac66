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
runs it. FastAPI attaches that list to the response, unless the endpoint returns a response
with a ``background`` of its own; then the dependency, whose code after ``yield`` runs once
the response has been sent (FastAPI >= 0.118), runs the tasks itself, after the response's
own. Either way they run after the response, through offload, and are never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, TypeAlias

try:
    from fastapi import Depends
    from starlette.background import BackgroundTasks as FastAPITasks
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise ImportError(
        "offload.fastapi needs FastAPI, which is not installed. "
        "Install it with: pip install offload[fastapi]",
        name=exc.name,
    ) from exc

from ._task import BackgroundTasks

logger = logging.getLogger("offload")

__all__ = ["Backgrounds", "request_backgrounds"]

_SCOPE_KEY = "offload.backgrounds"


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
