"""Call: what an executor runs. A task is one; executors know nothing more of it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class Call(Protocol):
    """A function and its arguments, with what executors need to know to run them.

    :class:`~offload.BackgroundTask` is one. Executors see only this, so that they sit
    below the task objects, the runner and the runtime, and never import them.
    """

    #: The pickled call, cached by the first executor that ships it to another process.
    payload: bytes | None

    @property
    def func(self) -> Callable[..., Any]: ...

    @property
    def args(self) -> tuple[Any, ...]: ...

    @property
    def kwargs(self) -> Mapping[str, Any]: ...

    @property
    def id(self) -> str:
        """The task's unique id."""
        ...

    @property
    def name(self) -> str:
        """The name reports and logs show."""
        ...

    @property
    def is_async(self) -> bool:
        """Whether calling ``func`` returns a coroutine."""
        ...


def call_sync(call: Call) -> Any:
    """Call a sync call's function and return its result, on the calling thread.

    :raises TypeError: if the function returned a coroutine, which would otherwise be
        dropped unrun (``add_task(lambda: notify(x))`` with an async ``notify``)
    """
    result = call.func(*call.args, **call.kwargs)
    if inspect.iscoroutine(result):
        result.close()
        raise TypeError(
            f"background task {call.name!r} returned a coroutine instead of running it; "
            "pass the coroutine function and its arguments, e.g. add_task(notify, x) "
            "instead of add_task(lambda: notify(x))"
        )
    return result


def run_to_end(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Call ``func`` where no event loop runs (a thread, a worker process); a coroutine
    function's coroutine runs to its end on a new asyncio loop."""
    result = func(*args, **kwargs)
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result
