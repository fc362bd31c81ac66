"""offload: run a response's background tasks on the executor each one needs."""

from typing import TYPE_CHECKING, Any

from ._call import Call
from ._config import OffloadConfig
from ._default import configure
from ._exceptions import (
    ConfigError,
    ExecutorNotFound,
    NotPicklable,
    OffloadError,
    Overloaded,
    TaskTimeout,
    WorkerCrashed,
)
from ._handles import cancel, status, statuses
from ._hooks import TaskHooks, add_hooks, remove_hooks
from ._lifespan import lifespan
from ._options import task_options
from ._progress import Progress, set_progress
from ._report import TaskReport
from ._runtime import Runtime
from ._status import TaskStatus
from ._status_app import status_app
from ._task import BackgroundTask, BackgroundTasks
from .executors import Executor, InlineExecutor, ThreadExecutor, register_executor

if TYPE_CHECKING:
    from .executors import PoolExecutor, ProcessExecutor

__all__ = [
    "BackgroundTask",
    "BackgroundTasks",
    "Call",
    "ConfigError",
    "Executor",
    "ExecutorNotFound",
    "InlineExecutor",
    "NotPicklable",
    "OffloadConfig",
    "OffloadError",
    "Overloaded",
    "PoolExecutor",
    "ProcessExecutor",
    "Progress",
    "Runtime",
    "TaskHooks",
    "TaskReport",
    "TaskStatus",
    "TaskTimeout",
    "ThreadExecutor",
    "WorkerCrashed",
    "add_hooks",
    "cancel",
    "configure",
    "lifespan",
    "register_executor",
    "remove_hooks",
    "set_progress",
    "status",
    "status_app",
    "statuses",
    "task_options",
]


def __getattr__(name: str) -> Any:
    # The process and pool executors import multiprocessing: only when first asked for.
    if name in ("PoolExecutor", "ProcessExecutor"):
        from . import executors

        return getattr(executors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
