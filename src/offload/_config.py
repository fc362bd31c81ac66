"""OffloadConfig: every setting of offload in one frozen, validated object."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from ._checks import check_choice, check_int, check_number, check_timeout
from ._exceptions import ConfigError

if TYPE_CHECKING:
    from ._report import TaskReport

OnError = Literal["raise", "stop", "continue", "collect"]
Concurrency = Literal["sequential", "group"]

#: The executor name that picks ``inline`` or ``thread`` by the kind of function.
AUTO = "auto"


def available_cpus() -> int:
    """Return how many CPUs this process may run on (its affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def start_methods() -> tuple[str, ...]:
    """Return the multiprocessing start methods of this platform, without importing it."""
    return ("spawn",) if sys.platform == "win32" else ("fork", "spawn", "forkserver")


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
    :param keep_statuses: how many ended tasks' statuses a runtime keeps, for
        ``offload.status(id)`` (the oldest are forgotten first); pending and running ones
        are always kept
    :param journal: path of the SQLite journal of durable tasks (created if missing), or
        ``None``; see ``durable``
    :param durable: make task lists durable: written to the ``journal`` before the endpoint
        returns, run at least once even if the server dies (a durable list is detached)
    :param dask_address: address of the Dask scheduler the ``"dask"`` executor connects to,
        e.g. ``"tcp://10.0.0.5:8786"``; needs offload's ``dask`` extra
    :raises ConfigError: if a value is invalid; an ``executor`` name that is not registered
        yet passes, since the app may register it later, unless it is a near miss of a known
        one (the same but for letter case, or at most two letters added, dropped or changed)
    """

    executor: str = AUTO
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
    keep_statuses: int = 1000
    journal: str | None = None
    durable: bool = False
    dask_address: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.executor, str) or not self.executor:
            raise ConfigError(f"executor must be a non-empty executor name, got {self.executor!r}")
        if self.executor != AUTO and self.executor not in _executor_names:
            # Maybe registered later, so refused now only if it is surely a typo.
            known = (AUTO, *_executor_names)
            if near_miss(self.executor, known) is not None:
                raise ConfigError(unknown_executor(self.executor, known))
        check_choice("on_error", self.on_error, get_args(OnError))
        check_choice("concurrency", self.concurrency, get_args(Concurrency))
        check_int("thread_limit", self.thread_limit)
        check_int("process_workers", self.process_workers)
        check_choice("start_method", self.start_method, start_methods())
        if not isinstance(self.preload, tuple) or not all(isinstance(m, str) for m in self.preload):
            raise ConfigError(f"preload must be a tuple of module names, got {self.preload!r}")
        check_int("max_tasks_per_child", self.max_tasks_per_child, optional=True)
        check_timeout("task_timeout", self.task_timeout)
        check_int("retries", self.retries, minimum=0)
        check_number("retry_backoff", self.retry_backoff, minimum=0)
        if not isinstance(self.detach, bool):
            raise ConfigError(f"detach must be True or False, got {self.detach!r}")
        check_int("max_pending", self.max_pending, optional=True)
        check_int("keep_statuses", self.keep_statuses, minimum=0)
        if isinstance(self.journal, os.PathLike):  # a Path is welcome; the field keeps text
            object.__setattr__(self, "journal", os.fspath(self.journal))
        if self.journal is not None and (not isinstance(self.journal, str) or not self.journal):
            raise ConfigError(
                f"journal must be the path of a SQLite file or None, got {self.journal!r}"
            )
        if not isinstance(self.durable, bool):
            raise ConfigError(f"durable must be True or False, got {self.durable!r}")
        if self.durable and self.journal is None:
            raise ConfigError(
                "durable=True needs a journal to write the tasks to: "
                "set journal='tasks.journal' (a SQLite file) as well"
            )
        check_number("shutdown_timeout", self.shutdown_timeout, minimum=0)
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

        :raises ConfigError: if ``mapping`` is not a mapping, a key is not a field, or a
            value is invalid
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                "from_mapping needs a mapping of field names to values, "
                f"got {_a(type(mapping).__name__)}; pass a dict such as {{'thread_limit': 8}}"
            )
        _check_keys(mapping)
        return cls(**{key: _parse(key, value) for key, value in mapping.items()})

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "OFFLOAD_"
    ) -> OffloadConfig:
        """Build a config from ``<prefix><FIELD>`` variables, e.g. ``OFFLOAD_THREAD_LIMIT=8``.

        Only variables that name a field are read. Other variables with the prefix are
        ignored with one :exc:`UserWarning`, since an orchestrator sets some of its own
        (Kubernetes sets ``OFFLOAD_SERVICE_HOST`` and ``OFFLOAD_PORT`` for a service named
        offload); but one that is a typo of a field is an error, as it was surely meant for it.

        :param environ: the variables to read; ``os.environ`` by default
        :raises ConfigError: if a variable with the prefix is a typo of a field (at most two
            letters added, dropped or changed), or a value is invalid
        """
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        typos: list[str] = []
        ignored: list[str] = []
        for name, value in environ.items():
            if not isinstance(name, str) or not name.startswith(prefix):
                continue
            key = name[len(prefix) :].lower()
            if key in FIELD_NAMES:
                values[key] = value
            elif _typo_of(key) is not None:
                typos.append(name)
            else:
                ignored.append(name)
        if typos:
            raise _unknown_keys(sorted(typos), prefix=prefix)
        if ignored:
            # Names only: the values of variables that are not offload's may be secrets.
            warnings.warn(
                f"OffloadConfig.from_env ignored {', '.join(map(repr, sorted(ignored)))}, "
                f"which name no config field; if one was meant for offload, rename it "
                f"{prefix}<FIELD> after a field of OffloadConfig",
                UserWarning,
                stacklevel=2,
            )
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

# The registered executor names, as offload.executors tells them (use_executor_names): the
# executors sit above this module, so it is told their names rather than importing them.
_executor_names: Collection[str] = ()


def use_executor_names(names: Collection[str]) -> None:
    """Check the ``executor`` of every config made from now on against ``names``.

    The executor registry passes a live view of its names, so that an executor registered
    later is known from then on.
    """
    global _executor_names
    _executor_names = names


def near_miss(name: str, names: Iterable[str]) -> str | None:
    """Return the one of ``names`` that ``name`` is a near miss of, or ``None``.

    A near miss differs in letter case only, or by at most two letters added, dropped or
    changed: ``"Process"`` and ``"threads"`` are near misses of ``"process"`` and ``"thread"``.
    """
    folded = name.lower()
    distance, closest = min(
        ((_edit_distance(folded, known.lower()), known) for known in names),
        default=(_TYPO_DISTANCE + 1, ""),
    )
    return closest if distance <= _TYPO_DISTANCE else None


def unknown_executor(name: str, names: Collection[str]) -> str:
    """Say that ``name`` is none of the executor ``names``, with a near miss if there is one."""
    known = ", ".join(repr(known) for known in sorted(names))
    close = near_miss(name, names)
    if close is not None:
        return f"unknown executor {name!r}; known executors are {known}; did you mean {close!r}?"
    return (
        f"unknown executor {name!r}; known executors are {known} "
        "(add one with offload.register_executor)"
    )


def _check_keys(keys: Iterable[object]) -> None:
    unknown: list[str] = []
    for key in keys:
        if not isinstance(key, str):
            raise ConfigError(
                f"config keys must be field names (strings), got {_a(type(key).__name__)} "
                f"key; valid keys are: {', '.join(sorted(FIELD_NAMES))}"
            )
        if key not in FIELD_NAMES:
            unknown.append(key)
    if unknown:
        raise _unknown_keys(sorted(unknown))


def _unknown_keys(names: list[str], *, prefix: str = "") -> ConfigError:
    def shown(field_name: str) -> str:
        return prefix + field_name.upper() if prefix else field_name

    problems = []
    for name in names:
        key = name[len(prefix) :].lower()
        close = _typo_of(key)
        hint = f" (did you mean {shown(close)}?)" if close else ""
        problems.append(f"{name!r}{hint}")
    valid = ", ".join(shown(name) for name in sorted(FIELD_NAMES))
    return ConfigError(f"unknown config key {', '.join(problems)}; valid keys are: {valid}")


#: How far (in letters added, dropped or changed) a name may be from a field to be its typo.
#: Kubernetes' ``OFFLOAD_PORT`` is 5 from ``on_report``; ``OFFLOAD_THREADLIMIT`` is 1 away.
_TYPO_DISTANCE = 2


def _typo_of(key: str) -> str | None:
    """Return the field ``key`` is a typo of, or ``None`` if no field is that close."""
    distance, closest = min((_edit_distance(key, name), name) for name in FIELD_NAMES)
    return closest if distance <= _TYPO_DISTANCE else None


def _edit_distance(a: str, b: str) -> int:
    """Return the fewest letters to add, drop or change to turn ``a`` into ``b`` (Levenshtein)."""
    # Row by row: previous[j] is the distance from the first i-1 letters of a to b[:j].
    previous = list(range(len(b) + 1))
    for i, letter_a in enumerate(a, start=1):
        current = [i]
        for j, letter_b in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1,  # drop letter_a
                    current[j - 1] + 1,  # add letter_b
                    previous[j - 1] + (letter_a != letter_b),  # keep or change
                )
            )
        previous = current
    return previous[-1]


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _is_address(value: object) -> bool:
    # Loose on purpose: Dask knows its schemes (tcp, tls, ucx, inproc); this catches blanks.
    return isinstance(value, str) and ":" in value and not any(c.isspace() for c in value)


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
    if kind is Callable:
        return _import_callable(text, source or key)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            return lowered in _TRUE
        return kind(text)
    except ValueError as exc:
        expected = {int: "an integer", float: "a number", bool: "true or false"}[kind]
        raise ConfigError(f"{source or key} must be {expected}, got {value!r}") from exc


def _import_callable(path: str, source: str) -> object:
    def error(problem: str) -> ConfigError:
        return ConfigError(
            f"{source} must be an import path like 'package.module:function', got {path!r}"
            f" ({problem})"
        )

    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise error("a colon must come between the module and the callable")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # importing runs the module's code, which may raise anything
        raise error(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    try:
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a module's __getattr__ may raise more than AttributeError
        raise error(f"module {module_name!r} has no {attribute!r}") from exc
    if not callable(obj):
        raise error(f"it is {_a(type(obj).__name__)}, which cannot be called")
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
    "keep_statuses": int,
    "journal": str,
    "durable": bool,
    "dask_address": str,
}
_OPTIONAL = {
    "max_tasks_per_child",
    "task_timeout",
    "max_pending",
    "on_report",
    "journal",
    "dask_address",
}
