"""The trace context a task takes into a worker process, when tracing is installed.

``offload.tracing`` registers how to write the current context into a carrier (the W3C
``traceparent`` headers, a dict of strings); the process executor sends it with the task, and
the worker activates it while the task runs, if OpenTelemetry is installed there too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: A carrier: text headers, safe to pickle, holding no task data.
Carrier = dict[str, str]

_inject: Callable[[], Carrier] | None = None


def set_injector(inject: Callable[[], Carrier] | None) -> None:
    """Make ``inject`` what writes the current context for a worker (``None``: nothing)."""
    global _inject
    _inject = inject


def current_carrier() -> Carrier:
    """Return the current context as a carrier; empty when no tracing is installed."""
    return {} if _inject is None else _inject()


@contextmanager
def activated(carrier: Carrier) -> Iterator[None]:
    """In a worker: make ``carrier``'s context current while the task runs, if
    OpenTelemetry is installed here; else do nothing."""
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.propagate import extract
    except ImportError:  # no OpenTelemetry in the worker: its spans would go nowhere anyway
        yield
        return
    token = context.attach(extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
