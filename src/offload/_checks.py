"""Checks of values users give offload, each raising an error that names the rule broken."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from ._callables import callable_name
from ._exceptions import ConfigError


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> None:
    """:raises ConfigError: unless ``value`` is one of ``choices``"""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")


def check_timeout(name: str, value: object) -> None:
    """:raises ConfigError: unless ``value`` is ``None`` or a finite number of seconds > 0"""
    if value is not None and (not is_number(value) or value <= 0):  # type: ignore[operator]
        raise ConfigError(f"{name} must be a finite number of seconds > 0, or None, got {value!r}")


def check_int(name: str, value: object, *, minimum: int = 1, optional: bool = False) -> None:
    """:raises ConfigError: unless ``value`` is an int >= ``minimum`` (or ``None``, if optional)"""
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        none = ", or None" if optional else ""
        raise ConfigError(f"{name} must be an int >= {minimum}{none}, got {value!r}")


def check_number(name: str, value: object, *, minimum: float) -> None:
    """:raises ConfigError: unless ``value`` is a finite number >= ``minimum``"""
    if not is_number(value) or value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    # NaN and infinity are floats too, but no timeout or delay can be made of them.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_callable(func: object, where: str) -> None:
    """Raise a teaching :exc:`TypeError` unless ``func`` is a callable (not a coroutine)."""
    if inspect.iscoroutine(func):
        name = func.__qualname__
        func.close()  # it will never run; closing it spares the user a second warning
        raise TypeError(
            f"{where} got the coroutine object {name}(...), not a function. Pass the function "
            f"and its arguments separately, e.g. add_task({name}, ...) instead of "
            f"add_task({name}(...)), so the call happens after the response is sent"
        )
    if not callable(func):
        raise TypeError(f"{where} needs a callable, got a {type(func).__name__}")


def check_no_arguments(func: Callable[..., object]) -> None:
    """:raises TypeError: if ``func`` cannot be called without arguments"""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return
    try:
        signature.bind()
    except TypeError:
        name = callable_name(func)
        raise TypeError(
            f"{name} needs arguments, so it cannot be a background task on its own; "
            f"wrap it with its arguments: BackgroundTask({name}, ...)"
        ) from None
