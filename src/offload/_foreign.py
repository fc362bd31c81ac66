"""Other frameworks' background tasks, seen as the calls offload runs.

Starlette's, FastAPI's and Lilya's task objects carry ``func``, ``args`` and ``kwargs``; their
task lists carry ``tasks``. offload runs each such task as its own call, so that the executor
choice, ``thread_limit``, pickling and names apply to it as to offload's own tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._callables import is_async_callable
from ._checks import check_callable, check_no_arguments

#: One call: a function, its positional and its keyword arguments.
Unpacked = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def task_list_items(item: object) -> Iterable[object] | None:
    """Return the tasks of another framework's task list, or ``None`` if ``item`` is none."""
    tasks = getattr(item, "tasks", None)
    return tasks if isinstance(tasks, Iterable) else None


def unpack(item: object) -> Unpacked:
    """Return the call another framework's task object stands for, or that of a plain
    zero-argument callable.

    :raises TypeError: if ``item`` is neither, naming what it is and what would do
    """
    if all(hasattr(item, a) for a in ("func", "args", "kwargs")) and _func_runs_as_is(item):
        return item.func, tuple(item.args), dict(item.kwargs)  # type: ignore[attr-defined]
    check_callable(item, "a background task list")
    check_no_arguments(item)  # type: ignore[arg-type]
    return item, (), {}  # type: ignore[return-value]


def _func_runs_as_is(task: object) -> bool:
    """Whether a Starlette-style task's ``func`` can be run on its own, without the task.

    Lilya's task wraps a sync function in an adapter that returns an awaitable without being
    a coroutine function, so run as a sync call it would silently do nothing; such a task is
    run whole instead (it is itself an async callable). Starlette's and FastAPI's tasks say
    which kind their ``func`` is with ``is_async``.
    """
    func = task.func  # type: ignore[attr-defined]
    return is_async_callable(func) or hasattr(task, "is_async") or not is_async_callable(task)
