"""Pickling a task's call for a worker process, and unpacking what the worker sends back."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from .._callables import module_name
from .._exceptions import NotPicklable, OffloadError

if TYPE_CHECKING:
    from .._call import Call

#: What a worker sends back, built from plain types only so that unpickling it in the
#: parent can never fail (a pool whose result cannot be unpickled breaks):
#: ``(kind, data, type_name, message, traceback_text)`` where ``kind`` is
#: ``"returned"`` (``data`` is the pickled value), ``"raised"`` (``data`` is the pickled
#: exception, or ``None`` if it would not pickle) or ``"unpicklable"`` (the return value
#: would not pickle: ``type_name`` is its type and ``message`` why).
Outcome = tuple[str, bytes | None, str, str, str]


def payload_of(task: Call) -> bytes:
    """Return the task's pickled call, pickling it now if no executor has done so yet.

    :raises NotPicklable: if the call cannot be pickled
    """
    if task.payload is None:
        task.payload = pickle_call(task)
    return task.payload


def pickle_call(task: Call) -> bytes:
    """Pickle ``(func, args, kwargs)`` of ``task`` with the standard pickle.

    :raises NotPicklable: naming the task and the first part of the call that does not pickle
    """
    try:
        return pickle.dumps((task.func, task.args, task.kwargs), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotPicklable(_explain(task, exc)) from exc


class Culprit(NamedTuple):
    """The first part of a call that does not pickle, told without its value.

    A task's arguments may hold secrets (a password beside a lock), and this text ends up
    in a traceback and a log: so it gives where the part is and its type, never its repr.
    """

    where: str
    """e.g. ``"argument 0 (a dict)"`` or ``"its function app.tasks.<lambda>"``"""
    is_function: bool
    """whether the part is the function (not a callable object, nor an argument)"""
    problem: str
    """the pickler's own ``"TypeError: cannot pickle '_thread.lock' object"``"""


def first_unpicklable(task: Call, dumps: Callable[[object], bytes]) -> Culprit | None:
    """Pickle each part of the task's call alone, since a pickler's own message rarely names
    the culprit; return the first part that fails, or ``None`` if each pickles alone.
    """
    func = task.func
    parts: list[tuple[str, object]] = []
    # A partial's bound arguments are arguments too, and its repr would show them.
    while isinstance(func, partial):
        parts += [(f"partial argument {i}", arg) for i, arg in enumerate(func.args)]
        parts += [(f"partial keyword argument {key!r}", v) for key, v in func.keywords.items()]
        func = func.func
    parts += [(f"argument {i}", arg) for i, arg in enumerate(task.args)]
    parts += [(f"keyword argument {key!r}", value) for key, value in task.kwargs.items()]
    try:
        dumps(func)
    except Exception as exc:
        # A function's name is code, not data; a callable object's repr may show its fields.
        name = getattr(func, "__qualname__", None)
        if isinstance(name, str):
            return Culprit(f"its function {module_name(func)}.{name}", True, _problem(exc))
        return Culprit(f"its callable ({_type_of(func)})", False, _problem(exc))
    for where, value in parts:
        try:
            dumps(value)
        except Exception as exc:
            return Culprit(f"{where} ({_type_of(value)})", False, _problem(exc))
    return None


def _type_of(value: object) -> str:
    cls = type(value)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _explain(task: Call, exc: Exception) -> str:
    culprit = first_unpicklable(task, _dumps)
    if culprit is None:
        return (
            f"process task {task.name!r} cannot be pickled ({_problem(exc)}); "
            "pass a module-level function and picklable arguments"
        )
    if culprit.is_function:
        return (
            f"process task {task.name!r} cannot be pickled: {culprit.where} does not pickle "
            f"({culprit.problem}); define it at module level so worker processes can import "
            "it by name (a lambda or a function defined inside another function cannot be)"
        )
    return (
        f"process task {task.name!r} cannot be pickled: {culprit.where} does not pickle "
        f"({culprit.problem}); pass picklable arguments, such as the plain data a worker "
        "can rebuild the object from"
    )


def _dumps(obj: object) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, chained as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


def unpack_outcome(outcome: Outcome, task_name: str) -> Any:
    """Return the value a worker sent back, or raise the exception it sent back.

    :raises BaseException: the task's exception, its worker traceback as ``__cause__``
    :raises OffloadError: if the exception or value cannot cross back to this process
    """
    kind, data, type_name, message, traceback_text = outcome
    if kind == "returned":
        assert data is not None
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise OffloadError(
                f"process task {task_name!r} returned a value that cannot be unpickled in "
                f"the parent ({type(exc).__name__}: {exc}); return plain data instead"
            ) from None
    if kind == "unpicklable":
        raise OffloadError(
            f"process task {task_name!r} returned a {type_name} that cannot be pickled "
            f"({message}); return plain data instead"
        )
    error, problem = _unpickle_exception(data)
    if error is None:
        error = OffloadError(
            f"process task {task_name!r} raised {type_name}: {message} "
            f"(the exception {problem}, so it is shown as text)"
        )
    elif not isinstance(error, Exception):
        # A worker's SystemExit or KeyboardInterrupt must not stop the server.
        error = OffloadError(f"process task {task_name!r} raised {type_name}: {message}")
    error.__cause__ = RemoteTraceback(traceback_text)
    raise error


def _unpickle_exception(data: bytes | None) -> tuple[BaseException | None, str]:
    if data is None:
        return None, "cannot be pickled"
    try:
        error = pickle.loads(data)
    except Exception as exc:  # e.g. an exception whose __init__ needs more than its message
        return None, f"cannot be unpickled in the parent: {type(exc).__name__}: {exc}"
    if not isinstance(error, BaseException):
        return None, f"unpickled as {type(error).__name__}"
    return error, ""
