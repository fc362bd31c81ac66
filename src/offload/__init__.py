"""offload: run a response's background tasks on the executor each one needs."""

from ._config import OffloadConfig
from ._exceptions import (
    ConfigError,
    ExecutorNotFound,
    NotPicklable,
    OffloadError,
    Overloaded,
    TaskTimeout,
    WorkerCrashed,
)
from ._lifespan import lifespan
from ._options import task_options
from ._report import TaskReport
from ._runtime import Runtime, configure
from ._task import BackgroundTask, BackgroundTasks
from .executors import (
    Executor,
    InlineExecutor,
    PoolExecutor,
    ProcessExecutor,
    ThreadExecutor,
    register_executor,
)

__all__ = [
    "BackgroundTask",
    "BackgroundTasks",
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
    "Runtime",
    "TaskReport",
    "TaskTimeout",
    "ThreadExecutor",
    "WorkerCrashed",
    "configure",
    "lifespan",
    "register_executor",
    "task_options",
]
