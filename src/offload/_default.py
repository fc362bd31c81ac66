"""The runtime task lists use: the innermost one entered, else a default one made on first use.

The default runtime serves apps that enter none (no ``offload.lifespan``). It is made with the
config given to :func:`configure` (else one read from ``OFFLOAD_*``) and closed at interpreter
exit; what that exit cannot reach (a server killed by a signal) its worker processes notice on
their own.
"""

from __future__ import annotations

import atexit
import logging
import threading
from functools import partial

import anyio
from anyio.lowlevel import current_token

from ._config import OffloadConfig
from ._runtime import Runtime, entered_runtime, set_default_config

logger = logging.getLogger("offload")

_default: Runtime | None = None
_lock = threading.Lock()


def current_runtime() -> Runtime:
    """Return the runtime task lists use now: the innermost entered runtime, else the
    default one (created on first use).

    Process-wide, not per thread or event loop: a runtime entered on one loop (a lifespan
    run by a test client's portal, say) is the one a task list made on another uses.
    """
    return entered_runtime() or _default or _create_default()


def configure(config: OffloadConfig) -> None:
    """Set the config of the default runtime, used wherever no :class:`Runtime` is entered.

    Call it at start-up. A default runtime already in use is replaced, and closed: at once
    when no event loop runs in this thread (draining its tasks in flight elsewhere, up to
    its ``shutdown_timeout``), else at interpreter exit, with a warning.
    """
    global _default
    if not isinstance(config, OffloadConfig):
        raise TypeError(f"configure() needs an OffloadConfig, got a {type(config).__name__}")
    with _lock:
        set_default_config(config)
        replaced, _default = _default, None
    if replaced is not None:
        _close_replaced(replaced)


def reset() -> None:
    """Close the default runtime now, as interpreter exit would, and forget the config given
    to :func:`configure`: the next task list gets a fresh default runtime (tests use this)."""
    global _default
    with _lock:
        runtime, _default = _default, None
        set_default_config(None)
    if runtime is not None:
        _close_now(runtime)


def _create_default() -> Runtime:
    global _default
    with _lock:
        if _default is None:
            _default = Runtime()
        return _default


def _close_replaced(runtime: Runtime) -> None:
    if not runtime.started:
        return  # nothing to close; it is still closed at exit should it start something
    try:
        current_token()
    except RuntimeError:  # no event loop runs in this thread: closing it here blocks nothing
        anyio.run(runtime.aclose)
        return
    logger.warning(
        "configure() replaced the default offload runtime while an event loop runs in this "
        "thread, so the old one cannot be closed now; it is closed at exit. Call configure() "
        "at start-up, before any task runs"
    )
    _replaced_in_use.append(runtime)


def _close_now(runtime: Runtime) -> None:
    if runtime.started:
        # No event loop outlives the program, so there is nothing left to wait for.
        anyio.run(partial(runtime.aclose, drain_timeout=0))


_replaced_in_use: list[Runtime] = []


@atexit.register
def _close_at_exit() -> None:
    for runtime in [*_replaced_in_use, *filter(None, [_default])]:
        _close_now(runtime)
