"""Per-task options, the decorator that gives a function default ones, and how the executor
of one task is chosen from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType
from typing import TypeVar

from ._callables import unwrap
from ._checks import check_int, check_timeout
from .executors._base import Executor
from .executors._registry import AUTO, check_executor_name

F = TypeVar("F", bound=Callable[..., object])
T = TypeVar("T")

#: An executor chosen by registered name or given as an instance.
ExecutorSpec = str | Executor

_ATTRIBUTE = "__offload_options__"


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Options of one task, or one function's defaults; ``None`` means not set here."""

    executor: ExecutorSpec | None = None
    timeout: float | None = None
    retries: int | None = None
    name: str | None = None
    key: str | None = None  # a durable task's idempotency key

    def __post_init__(self) -> None:
        # A decorator runs at import time, possibly before the application registers the
        # executor it names: only a near miss of a known name ("Process") is refused here;
        # other names are checked when a task is made.
        check_executor_spec(self.executor, allow_unregistered=True)
        check_timeout("timeout", self.timeout)
        check_int("retries", self.retries, minimum=0, optional=True)
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {self.name!r}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise TypeError(f"key must be a non-empty string, got a {type(self.key).__name__}")


def check_executor_spec(spec: object, *, allow_unregistered: bool = False) -> None:
    """Check that ``spec`` names a registered executor or is one.

    :param allow_unregistered: let a name pass that may be registered later: one that is
        not a near miss of a known name
    :raises ExecutorNotFound: if it is an unknown name (or, with ``allow_unregistered``, a
        near miss of a known one)
    :raises TypeError: if it is neither a name, an executor nor ``None``
    """
    if spec is None or isinstance(spec, Executor):
        return
    if not isinstance(spec, str):
        raise TypeError(f"executor must be a registered name or an offload.Executor, got {spec!r}")
    check_executor_name(spec, allow_unregistered=allow_unregistered)


def task_options(
    *,
    executor: ExecutorSpec | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Give a function default options for every task that calls it.

    The function itself is returned, unchanged but for an attribute, so it still pickles
    by reference for the process executor::

        @task_options(executor="process", timeout=60)
        def render_report(report_id: int) -> None: ...

    A task's own ``task.set(...)`` overrides these. An executor name that is a near miss of
    a known one (``"Process"``, ``"threads"``) is an error here; any other name is checked
    when a task of the function is made, so it may be registered after the decorator runs.

    ``timeout`` limits each attempt; ``retries`` runs a task that failed, timed out or lost
    its worker process again, after an exponential backoff with jitter (the config's
    ``retry_backoff``). Give retries only to idempotent functions: an attempt may have done
    part of its work before it failed.

    :raises ConfigError: if ``timeout`` or ``retries`` is out of range
    :raises ExecutorNotFound: if ``executor`` is a near miss of a known executor name
    """
    options = TaskOptions(executor=executor, timeout=timeout, retries=retries, name=name)

    def decorate(func: F) -> F:
        setattr(func, _ATTRIBUTE, options)
        return func

    return decorate


#: Options that set nothing, shared by every task that sets none.
NO_OPTIONS = TaskOptions()


def function_options(func: Callable[..., object]) -> TaskOptions:
    """Return the ``@task_options`` defaults of ``func`` (looking through partials)."""
    options = getattr(func if type(func) is FunctionType else unwrap(func), _ATTRIBUTE, NO_OPTIONS)
    return options if isinstance(options, TaskOptions) else NO_OPTIONS


def resolve_executor(
    explicit: ExecutorSpec | None, chosen: ExecutorSpec | None, default: str, is_async: bool
) -> ExecutorSpec:
    """Choose the executor of one task, most specific first.

    :param explicit: the task's own (``task.set``), else its function's (``@task_options``)
    :param chosen: what the task list chose for it (a name, an instance, or a chooser's answer)
    :param default: the config's ``executor``
    :param is_async: whether the task's function is a coroutine function, for ``"auto"``
    """
    spec = explicit if explicit is not None else chosen if chosen is not None else default
    if spec == AUTO:  # Starlette's behaviour: coroutine functions on the loop, the rest in threads
        return "inline" if is_async else "thread"
    return spec


def checked_choice(chooser: Callable[[T], object], task: T, name: str) -> ExecutorSpec | None:
    """Call a list's executor chooser with ``task``, and check that it chose an executor.

    :param name: the task's name, for the message
    :raises TypeError: if the chooser returned neither a name, an executor nor ``None``
    :raises ExecutorNotFound: if it returned an unknown name
    """
    spec = chooser(task)
    try:
        check_executor_spec(spec)
    except TypeError:
        raise TypeError(
            f"executor chooser {chooser!r} returned {spec!r} for task {name!r}; "
            "a chooser must return an executor name, an offload.Executor or None"
        ) from None
    return spec  # type: ignore[return-value]
