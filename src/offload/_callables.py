"""What a task's callable is — its name, its module, whether it is async — seen through partials."""

from __future__ import annotations

import inspect
from functools import partial
from types import FunctionType


def unwrap(func: object) -> object:
    """Return the callable at the bottom of a chain of ``functools.partial``."""
    while isinstance(func, partial):
        func = func.func
    return func


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine (partials and ``async __call__`` included)."""
    if type(func) is FunctionType:  # the common case, answered at the cost of a flag test
        return bool(func.__code__.co_flags & inspect.CO_COROUTINE)
    func = unwrap(func)
    return inspect.iscoroutinefunction(func) or (
        callable(func) and inspect.iscoroutinefunction(func.__call__)
    )


def callable_name(func: object) -> str:
    """Return a readable name for ``func``: its qualified name, looking through partials;
    for a callable object, its class's (never its repr, which may show secrets)."""
    func = unwrap(func)
    name = getattr(func, "__qualname__", None)
    return name if isinstance(name, str) else type(func).__qualname__


def module_name(func: object) -> str:
    """Return the name of the module ``func`` (or, for a callable object, its class) is from."""
    func = unwrap(func)
    module = getattr(func, "__module__", None)
    return module if isinstance(module, str) else type(func).__module__
