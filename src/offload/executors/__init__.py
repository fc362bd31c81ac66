"""The executors: where a background task runs."""

from ._base import Executor
from ._registry import executor_names, register_executor
from .inline import InlineExecutor
from .pool import PoolExecutor
from .process import ProcessExecutor
from .thread import ThreadExecutor

__all__ = [
    "Executor",
    "InlineExecutor",
    "PoolExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "executor_names",
    "register_executor",
]
