"""Choosing the executor of one task: the five steps, most specific first."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._options import ExecutorSpec, check_executor_spec
from .executors._registry import AUTO

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._task import BackgroundTask
    from .executors import Executor

#: A list-level choice: a name, an instance, or a chooser called with each task
#: (returning ``None`` from a chooser leaves the choice to the config).
Chooser = Callable[["BackgroundTask"], ExecutorSpec | None]
ExecutorChoice = ExecutorSpec | Chooser


def resolve(task: BackgroundTask, chosen: ExecutorSpec | None, runtime: Runtime) -> Executor:
    """Return the executor that runs ``task``.

    :param chosen: what the task list chose for it (step 3), if anything
    """
    spec = task.explicit_executor  # steps 1 and 2: the task's own, then its function's
    if spec is None:
        spec = chosen if chosen is not None else runtime.config.executor
    return runtime.executor(_auto(task, spec))


def prepare(task: BackgroundTask, spec: ExecutorSpec, runtime: Runtime) -> None:
    """Let the executor ``spec`` check ``task`` now, while the endpoint still runs."""
    runtime.executor(_auto(task, spec)).prepare(task)


def checked_choice(chooser: Chooser, task: BackgroundTask) -> ExecutorSpec | None:
    """Call a chooser, and check that what it chose is an executor."""
    spec = chooser(task)
    try:
        check_executor_spec(spec)
    except TypeError:
        raise TypeError(
            f"executor chooser {chooser!r} returned {spec!r} for task {task.name!r}; "
            "a chooser must return an executor name, an offload.Executor or None"
        ) from None
    return spec


def _auto(task: BackgroundTask, spec: ExecutorSpec) -> ExecutorSpec:
    # Starlette's behaviour: coroutine functions on the loop, everything else in a thread.
    if spec == AUTO:
        return "inline" if task.is_async else "thread"
    return spec
