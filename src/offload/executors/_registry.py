"""The registry of executor names: built-ins imported on first use, user factories added by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# AUTO ("auto" is not an executor: it picks inline or thread) is re-exported for the layers above.
from .._config import AUTO as AUTO
from .._config import OffloadConfig, near_miss, unknown_executor, use_executor_names
from .._exceptions import ExecutorNotFound
from ._base import Executor

ExecutorFactory = Callable[["OffloadConfig"], Executor]

# Imported only when first used, so `import offload` pays for none of them.
_BUILTINS = {
    "inline": "offload.executors.inline:InlineExecutor",
    "thread": "offload.executors.thread:ThreadExecutor",
    "process": "offload.executors.process:ProcessExecutor",
    # Needs OffloadConfig.dask_address, and offload[dask] installed; both checked on first use.
    "dask": "offload.executors.dask:DaskExecutor",
}
_factories: dict[str, ExecutorFactory | str] = dict(_BUILTINS)
# A live view: a config made after register_executor(name, ...) knows the name too.
use_executor_names(_factories.keys())


def register_executor(name: str, factory: type[Executor] | ExecutorFactory) -> None:
    """Make ``name`` usable wherever an executor is named.

    :param name: the name, e.g. ``"dask"``
    :param factory: an :class:`Executor` subclass (built with its ``from_config``) or a
        callable that takes the active :class:`OffloadConfig` and returns an executor
    :raises ValueError: if ``name`` is already registered; the message names both factories
    """
    if not isinstance(name, str) or not name or name == AUTO:
        raise ValueError(
            f"executor name must be a non-empty string other than 'auto', got {name!r}"
        )
    if not callable(factory):
        raise TypeError(
            f"executor factory must be an Executor subclass or a callable, got {factory!r}"
        )
    if name in _factories:
        raise ValueError(
            f"executor name {name!r} is already registered to {_describe(_factories[name])}; "
            f"cannot register it again for {_describe(factory)}"
        )
    _factories[name] = _as_factory(factory)


def executor_names() -> list[str]:
    """Return every name an executor can be chosen by, ``"auto"`` included, sorted."""
    return sorted([AUTO, *_factories])


def check_executor_name(name: str, *, allow_unregistered: bool = False) -> None:
    """Raise :exc:`ExecutorNotFound` unless ``name`` is ``"auto"`` or registered.

    :param allow_unregistered: let a name that is not registered yet pass, since the app may
        register it later, unless it is a near miss of a known one (``"Process"``,
        ``"threads"``): then it is surely a typo
    """
    if name == AUTO or name in _factories:
        return
    known = executor_names()
    suggestion = near_miss(name, known)
    if allow_unregistered and suggestion is None:
        return
    # from None: raised while a caller handles the KeyError of its own lookup, which would
    # only add a second traceback.
    raise ExecutorNotFound(
        unknown_executor(name, known), name=name, known=tuple(known), suggestion=suggestion
    ) from None


def create_executor(name: str, config: OffloadConfig) -> Executor:
    """Build a new executor for a registered ``name`` with the settings in ``config``."""
    check_executor_name(name)
    factory = _factories[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = _factories[name] = _as_factory(
            getattr(importlib.import_module(module), attribute)
        )
    executor: object = factory(config)
    if not isinstance(executor, Executor):
        raise TypeError(
            f"executor factory {_describe(factory)} for {name!r} returned {executor!r}, "
            "not an offload.Executor"
        )
    executor.name = name
    return executor


def _as_factory(factory: type[Executor] | ExecutorFactory) -> ExecutorFactory:
    if isinstance(factory, type):
        if not issubclass(factory, Executor):
            raise TypeError(f"executor class {factory!r} must subclass offload.Executor")
        return factory.from_config
    return factory


def _describe(factory: object) -> str:
    if isinstance(factory, str):
        return factory.replace(":", ".")
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(factory)
