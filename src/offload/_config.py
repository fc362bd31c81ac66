"""OffloadConfig: every setting of offload in one frozen, validated object."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from ._exceptions import ConfigError

if TYPE_CHECKING:
    from ._report import TaskReport

OnError = Literal["raise", "stop", "continue", "collect"]
Concurrency = Literal["sequential", "group"]


def available_cpus() -> int:
    """Return how many CPUs this process may run on (its affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def default_start_method() -> str:
    # fork copies the parent's threads' locks mid-use; forkserver is the safe fast choice on Linux.
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadConfig:
    """All of offload's settings. Each field can also come from ``OFFLOAD_<FIELD>``.

    :param executor: executor for tasks that name none; ``"auto"`` runs coroutine functions
        ``inline`` and everything else on ``thread``
    :param on_error: ``"raise"``, ``"stop"``, ``"continue"`` or ``"collect"``
    :param concurrency: ``"sequential"`` or ``"group"``
    :param thread_limit: threads the thread executor may use at once (its own limiter)
    :param process_workers: size of the process pool
    :param start_method: multiprocessing start method of the process pool
    :param preload: modules the forkserver imports once, before forking workers
    :param max_tasks_per_child: recycle a worker process after this many tasks
    :param task_timeout: default per-task timeout in seconds
    :param retries: how many times a failed task is tried again
    :param retry_backoff: first retry delay in seconds; it doubles each retry, with jitter
    :param detach: hand task lists to the running ``Runtime`` instead of holding the request
    :param max_pending: bound on detached work; past it scheduling raises ``Overloaded``
    :param shutdown_timeout: seconds a ``Runtime`` waits for in-flight tasks when it closes
    :param on_report: called with every ``TaskReport``
    :param dask_address: address of the Dask scheduler the ``"dask"`` executor connects to,
        e.g. ``"tcp://10.0.0.5:8786"``; needs ``pip install offload[dask]``
    :raises ConfigError: if a value is invalid
    """

    executor: str = "auto"
    on_error: OnError = "raise"
    concurrency: Concurrency = "sequential"
    thread_limit: int = 40
    process_workers: int = field(default_factory=available_cpus)
    start_method: str = field(default_factory=default_start_method)
    preload: tuple[str, ...] = ()
    max_tasks_per_child: int | None = None
    task_timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 0.5
    detach: bool = False
    max_pending: int | None = None
    shutdown_timeout: float = 30.0
    on_report: Callable[[TaskReport], object] | None = None
    dask_address: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.executor, str) or not self.executor:
            raise ConfigError(f"executor must be a non-empty executor name, got {self.executor!r}")
        check_choice("on_error", self.on_error, get_args(OnError))
        check_choice("concurrency", self.concurrency, get_args(Concurrency))
        check_int("thread_limit", self.thread_limit)
        check_int("process_workers", self.process_workers)
        check_choice("start_method", self.start_method, multiprocessing.get_all_start_methods())
        if not isinstance(self.preload, tuple) or not all(isinstance(m, str) for m in self.preload):
            raise ConfigError(f"preload must be a tuple of module names, got {self.preload!r}")
        check_int("max_tasks_per_child", self.max_tasks_per_child, optional=True)
        check_timeout("task_timeout", self.task_timeout)
        check_int("retries", self.retries, minimum=0)
        _check_number("retry_backoff", self.retry_backoff, minimum=0)
        if not isinstance(self.detach, bool):
            raise ConfigError(f"detach must be True or False, got {self.detach!r}")
        check_int("max_pending", self.max_pending, optional=True)
        _check_number("shutdown_timeout", self.shutdown_timeout, minimum=0)
        if self.on_report is not None and not callable(self.on_report):
            raise ConfigError(f"on_report must be a callable or None, got {self.on_report!r}")
        if self.dask_address is not None and not _is_address(self.dask_address):
            raise ConfigError(
                "dask_address must be a scheduler address such as 'tcp://10.0.0.5:8786', "
                f"or None, got {self.dask_address!r}"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> OffloadConfig:
        """Build a config from a mapping of field names to values.

        String values are parsed as environment variables are, so the mapping may come from
        an INI or TOML file as well as from Python.

        :raises ConfigError: if a key is not a field, or a value is invalid
        """
        _check_keys(mapping)
        return cls(**{key: _parse(key, value) for key, value in mapping.items()})

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "OFFLOAD_"
    ) -> OffloadConfig:
        """Build a config from ``<prefix><FIELD>`` variables, e.g. ``OFFLOAD_THREAD_LIMIT=8``.

        :param environ: the variables to read; ``os.environ`` by default
        :raises ConfigError: if a variable with the prefix names no field, or a value is invalid
        """
        environ = os.environ if environ is None else environ
        values = {
            name[len(prefix) :].lower(): value
            for name, value in environ.items()
            if name.startswith(prefix)
        }
        _check_keys(values, prefix=prefix)
        return cls(
            **{
                key: _parse(key, value, source=prefix + key.upper())
                for key, value in values.items()
            }
        )

    def replace(self, **changes: Any) -> OffloadConfig:
        """Return a copy with ``changes`` applied and validated.

        :raises ConfigError: if a key is not a field, or a value is invalid
        """
        _check_keys(changes)
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(OffloadConfig))


def _check_keys(keys: Mapping[str, object], *, prefix: str = "") -> None:
    unknown = sorted(set(keys) - set(FIELD_NAMES))
    if not unknown:
        return
    valid = ", ".join(prefix + name.upper() if prefix else name for name in sorted(FIELD_NAMES))
    problems = []
    for key in unknown:
        shown = prefix + key.upper() if prefix else key
        close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
        hint = (
            f" (did you mean {prefix + close[0].upper() if prefix else close[0]}?)" if close else ""
        )
        problems.append(f"{shown!r}{hint}")
    raise ConfigError(f"unknown config key {', '.join(problems)}; valid keys are: {valid}")


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")


def check_timeout(name: str, value: object) -> None:
    if value is not None and (not _is_number(value) or value <= 0):  # type: ignore[operator]
        raise ConfigError(f"{name} must be a finite number of seconds > 0, or None, got {value!r}")


def _is_address(value: object) -> bool:
    # Loose on purpose: Dask knows its schemes (tcp, tls, ucx, inproc); this catches blanks.
    return isinstance(value, str) and ":" in value and not any(c.isspace() for c in value)


def _is_number(value: object) -> bool:
    # NaN and infinity are floats too, but no timeout or delay can be made of them.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: object, *, minimum: int = 1, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        none = ", or None" if optional else ""
        raise ConfigError(f"{name} must be an int >= {minimum}{none}, got {value!r}")


def _check_number(name: str, value: object, *, minimum: float) -> None:
    if not _is_number(value) or value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")


# How a string value (from the environment or a config file) becomes a field's value.
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse(key: str, value: object, *, source: str | None = None) -> Any:
    if isinstance(value, list) and _KINDS[key] is tuple:  # a TOML or JSON array
        return tuple(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    kind = _KINDS[key]
    if key in _OPTIONAL and text.lower() in {"", "none"}:
        return None
    if kind is str:
        return text
    if kind is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
        if kind is Callable:
            return _import_object(text)
        return kind(text)
    except (ValueError, ImportError, AttributeError) as exc:
        expected = {int: "an integer", float: "a number", bool: "true or false"}.get(
            kind, "an import path like 'package.module:function'"
        )
        raise ConfigError(f"{source or key} must be {expected}, got {value!r}") from exc


def _import_object(path: str) -> object:
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(path)
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


_KINDS: dict[str, Any] = {
    "executor": str,
    "on_error": str,
    "concurrency": str,
    "thread_limit": int,
    "process_workers": int,
    "start_method": str,
    "preload": tuple,
    "max_tasks_per_child": int,
    "task_timeout": float,
    "retries": int,
    "retry_backoff": float,
    "detach": bool,
    "max_pending": int,
    "shutdown_timeout": float,
    "on_report": Callable,
    "dask_address": str,
}
_OPTIONAL = {"max_tasks_per_child", "task_timeout", "max_pending", "on_report", "dask_address"}
