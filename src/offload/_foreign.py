"""Other frameworks' background tasks, seen as the calls offload runs.

Starlette's, FastAPI's, Lilya's, Ravyn's, Litestar's and Hypern's task objects carry a function
(``func``, ``fn`` or ``function``) with ``args`` and ``kwargs``; their task lists carry
``tasks``. offload runs each such task as its own call, so that the executor choice,
``thread_limit``, pickling and names apply to it as to offload's own tasks. A task whose class
was written by the app (a subclass that overrides ``__call__``) is run whole, as it would be
by its framework.

A framework that makes a sync function awaitable with an adapter object (Lilya's tasks keep
one in ``func``, Litestar's in ``fn``) is seen through: offload runs the function the adapter
holds. An object made to stand for offload's own tasks where a framework checks its classes
(``offload.lilya``, ``offload.ravyn``, ``offload.esmerald``) names them with ``__offload__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any, cast

from ._callables import is_async_callable
from ._checks import check_callable, check_no_arguments

#: One call: a function, its positional and its keyword arguments.
Unpacked = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

#: Where each framework's task object keeps its function.
FUNCTION_ATTRIBUTES = ("func", "fn", "function")

#: Where an adapter object that makes a sync function awaitable keeps the function: the
#: ``functools.wraps`` convention, Lilya's ``AsyncCallable``, or Litestar's.
ADAPTER_ATTRIBUTES = ("__wrapped__", "_callable", "func")

#: Where such an adapter keeps keyword arguments it adds to each call (Lilya's).
ADAPTER_KWARGS = "default_kwargs"

#: What calls a function directly, and so is never an adapter around one.
ROUTINES = (FunctionType, MethodType, BuiltinFunctionType, partial, type)

#: The attribute of an object that stands for an offload task or task list (a subclass of a
#: framework's task class, made so that the framework accepts it): that task or list.
OFFLOAD_ATTRIBUTE = "__offload__"

#: Task list attributes that ask for the tasks to run at once: Lilya's ``Tasks(as_group=True)``,
#: Litestar's ``BackgroundTasks(run_in_task_group=True)``.
GROUP_FLAGS = ("as_group", "run_in_task_group")

#: The packages whose task classes offload unpacks; a subclass from anywhere else that
#: overrides ``__call__`` is run whole.
FRAMEWORKS = ("starlette", "fastapi", "lilya", "ravyn", "esmerald", "litestar", "ellar", "hypern")


def carried(item: object) -> object:
    """Return the offload task or task list that ``item`` stands for, else ``item`` itself."""
    offloads = getattr(item, OFFLOAD_ATTRIBUTE, None)
    return item if offloads is None else offloads


def task_list_items(item: object) -> Iterable[object] | None:
    """Return the tasks of another framework's task list, or ``None`` if ``item`` is none.

    An object that stands for an offload task or list gives that (a list of one): offload
    takes it as it is, with its options.
    """
    offloads = carried(item)
    if offloads is not item:
        return [offloads]
    tasks = getattr(item, "tasks", None)
    return tasks if isinstance(tasks, Iterable) and not isinstance(tasks, str | bytes) else None


def runs_as_group(task_list: object) -> bool:
    """Whether another framework's task list asks for its tasks to run at once."""
    return any(getattr(task_list, flag, False) is True for flag in GROUP_FLAGS)


def unpack(item: object) -> Unpacked:
    """Return the call another framework's task object stands for, or that of a plain
    zero-argument callable (a task object the app's own class changes is one).

    :raises TypeError: if ``item`` is neither, naming what it is and what would do
    """
    func = _function_of(item)
    if func is not None:
        args = tuple(getattr(item, "args", ()) or ())
        kwargs = dict(getattr(item, "kwargs", {}) or {})
        adapted = _adapted_function(item, func)
        if adapted is not None:
            return adapted[0], args, {**adapted[1], **kwargs}
        if _runs_as_its_framework_would(item, func):
            return func, args, kwargs
    check_callable(item, "a background task list")
    check_no_arguments(item)  # type: ignore[arg-type]
    return item, (), {}  # type: ignore[return-value]


def _function_of(item: object) -> Callable[..., Any] | None:
    if not (hasattr(item, "args") and hasattr(item, "kwargs")):
        return None
    for attribute in FUNCTION_ATTRIBUTES:
        func: Any = getattr(item, attribute, None)
        if callable(func):
            return cast("Callable[..., Any]", func)
    return None


def _adapted_function(
    task: object, func: Callable[..., Any]
) -> tuple[Callable[..., Any], dict[str, Any]] | None:
    """Return the function (and the keyword arguments it adds) of the adapter ``func``, when
    the framework's own task awaits what ``func`` returns though ``func`` is no coroutine
    function: the adapter runs the function in the framework's thread pool, which offload's
    executors replace. ``None`` when ``func`` is no such adapter, or the app's class changes
    how the task runs.
    """
    # Only a callable object can be such an adapter (a decorated function has ``__wrapped__``
    # too), and Starlette's tasks, which say with ``is_async`` how they run, have none.
    if isinstance(func, ROUTINES) or hasattr(task, "is_async"):
        return None
    if is_async_callable(func) or not is_async_callable(task):
        return None
    call = _call_method_of(type(task))
    if call is not None and not _from_a_framework(call):
        return None
    for attribute in ADAPTER_ATTRIBUTES:
        inner: Any = getattr(func, attribute, None)
        if callable(inner) and inner is not func:
            added = getattr(func, ADAPTER_KWARGS, None)
            return cast("Callable[..., Any]", inner), dict(added or {})
    return None


def _runs_as_its_framework_would(task: object, func: Callable[..., Any]) -> bool:
    """Whether running ``func`` with the task's arguments does what awaiting the task does.

    Not when the app's own subclass overrides ``__call__`` (it may retry, log, or bind a
    context around the call), nor when the framework wraps a sync function in an adapter
    that returns an awaitable without being a coroutine function: run as a sync call it
    would do nothing. Starlette's and FastAPI's tasks say which kind their function is
    with ``is_async``.
    """
    call = _call_method_of(type(task))
    if call is not None and not _from_a_framework(call):
        return False
    return is_async_callable(func) or hasattr(task, "is_async") or not is_async_callable(task)


def _call_method_of(cls: type) -> object:
    for base in cls.__mro__:
        if "__call__" in base.__dict__:
            return base.__dict__["__call__"]
    return None


def _from_a_framework(function: object) -> bool:
    module = getattr(function, "__module__", None) or ""
    return module.partition(".")[0] in FRAMEWORKS
