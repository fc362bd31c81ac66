"""The errors offload raises.

Hierarchy::

    OffloadError
    ├── ConfigError (+ ValueError)
    ├── ExecutorNotFound (+ LookupError)
    ├── NotPicklable (+ TypeError)
    ├── TaskTimeout (+ TimeoutError)
    ├── WorkerCrashed
    └── Overloaded
"""

from __future__ import annotations

import signal


class OffloadError(Exception):
    """Raised for any failure that belongs to offload itself rather than to a task."""


class ConfigError(OffloadError, ValueError):
    """Raised when a configuration value is invalid."""


class ExecutorNotFound(OffloadError, LookupError):
    """Raised when an executor name is not registered.

    :ivar name: the name looked up
    :ivar known: the names that are registered (``"auto"`` included), sorted
    :ivar suggestion: the known name that ``name`` is a near miss of (a typo), if any
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        known: tuple[str, ...] = (),
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message)
        self.name = name
        self.known = known
        self.suggestion = suggestion


class NotPicklable(OffloadError, TypeError):
    """Raised when a task bound to a process executor cannot be pickled."""


class TaskTimeout(OffloadError, TimeoutError):
    """Raised when a task runs longer than its timeout."""


class WorkerCrashed(OffloadError):
    """Raised when the worker process running a task dies.

    :ivar exitcode: the worker's exit code; negative when a signal killed it (see :attr:`signal`)
    """

    def __init__(self, message: str, *, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed the worker, if a signal did (``SIGKILL``: often out of memory)."""
        return killed_by(self.exitcode)


def killed_by(exitcode: int | None) -> signal.Signals | None:
    """Return the signal a process's exit code says killed it (a negative code), if any."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode)
    except ValueError:
        return None


class Overloaded(OffloadError):
    """Raised when scheduling detached work would exceed ``max_pending``."""


def missing_extra(needer: str, package: str, extra: str, error: ImportError) -> ImportError:
    """The error to raise when an optional part of offload lacks the package it is built on,
    saying which of offload's extras brings it, as installed from a wheel or a clone.

    :param needer: what needs it, e.g. ``"offload.starlette"``
    :param package: what is missing, e.g. ``"Starlette"``
    """
    return ImportError(
        f"{needer} needs {package}, which is not installed. "
        f"Install offload's '{extra}' extra: pip install \"offload[{extra}]\" where "
        f"offload's wheel is installed, or pip install \".[{extra}]\" in offload's clone",
        name=error.name,
    )
