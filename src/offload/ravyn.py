"""Ravyn's ``BackgroundTask`` and ``BackgroundTasks``, with their tasks run by offload.

::

    from ravyn import Ravyn, get
    from ravyn.core.datastructures import Redirect

    from offload.ravyn import BackgroundTask, BackgroundTasks

    @get("/orders/{order_id}", background=BackgroundTask(audit, "viewed"))
    async def show(order_id: int) -> dict[str, int]: ...

    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(render_pdf, order_id).set(executor="process", timeout=60)
    return Redirect(path="/orders", background=tasks)

Each is an instance of Ravyn's own class, so Ravyn's typed response data structures
(``Redirect``, ``File``, ``Stream``, ``JSON``, ...) and handlers' ``background=`` take it,
but awaiting it runs it through offload, as :class:`offload.lilya.Task` and
:class:`offload.lilya.Tasks` do: ``.set(...)`` options, executors, ``thread_limit``,
error policy, reports. ``as_group=True`` runs the tasks at once.
"""

from __future__ import annotations

from ._exceptions import missing_extra

try:
    from ravyn import background as _ravyn
except ImportError as exc:
    raise missing_extra("offload.ravyn", "Ravyn", "ravyn", exc) from exc

from .lilya import Task, Tasks

__all__ = ["BackgroundTask", "BackgroundTasks"]


class BackgroundTask(Task, _ravyn.BackgroundTask):
    """Ravyn's ``BackgroundTask``, run by offload: see :class:`offload.lilya.Task`."""


class BackgroundTasks(Tasks, _ravyn.BackgroundTasks):
    """Ravyn's ``BackgroundTasks``, run by offload: see :class:`offload.lilya.Tasks`."""
