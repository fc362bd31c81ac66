"""InlineExecutor: run the task on the event loop itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._call import call_sync
from ._base import Executor

if TYPE_CHECKING:
    from .._call import Call


class InlineExecutor(Executor):
    """Await coroutine functions on the event loop; call sync callables directly.

    A sync callable blocks the loop while it runs, so keep inline work tiny. A timeout
    cancels a coroutine function at its next ``await``; it cannot interrupt a sync call.
    """

    name = "inline"

    async def run(self, task: Call) -> Any:
        if task.is_async:
            return await task.func(*task.args, **task.kwargs)
        return call_sync(task)
