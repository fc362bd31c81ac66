"""The executors: where a background task runs.

The process and pool executors are imported on first use, so that ``import offload`` pays
neither for them nor for :mod:`multiprocessing`.
"""

from typing import TYPE_CHECKING, Any

from ._base import Executor
from ._registry import executor_names, register_executor
from .inline import InlineExecutor
from .thread import ThreadExecutor

if TYPE_CHECKING:
    from .pool import PoolExecutor
    from .process import ProcessExecutor

__all__ = [
    "Executor",
    "InlineExecutor",
    "PoolExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "executor_names",
    "register_executor",
]

_LAZY = {"PoolExecutor": ".pool", "ProcessExecutor": ".process"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
