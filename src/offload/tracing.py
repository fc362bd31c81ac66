"""OpenTelemetry spans of offload's tasks, on ``opentelemetry-api``.

::

    import offload.tracing

    offload.tracing.install()  # with the global tracer provider your app configures

Each task then runs in an ``offload.task`` span, a child of the span that was current when
its list was scheduled (the request's, for a list run after the response or detached), with
the attributes ``offload.task.name``, ``offload.task.id``, ``offload.executor`` and
``offload.attempts``. A failure sets the span's status to ERROR and records the exception;
each retry is an ``offload.retry`` event. While the task runs its span is current, so spans
made inside it (on the loop, or in its thread) are its children.

A process or Dask task takes the context into its worker (W3C ``traceparent``, with the
call), where it is current while the task runs if OpenTelemetry is installed there: spans made
inside are children of the task's span too, exported by the worker's own tracer provider. So
does a task on a ``ProcessPoolExecutor`` of the app's own (``PoolExecutor``); one on a
``ThreadPoolExecutor`` runs in a copy of the context, as a thread task does.

Needs offload's ``otel`` extra (``pip install ".[otel]"`` in a clone); ``import offload``
never imports it.
"""

from __future__ import annotations

import threading
from typing import Any

from ._exceptions import missing_extra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagate import inject
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:
    raise missing_extra("offload.tracing", "opentelemetry-api", "otel", exc) from exc

from ._call import Call
from ._carrier import Carrier, set_injector
from ._hooks import TaskHooks, TaskState, add_hooks, global_hooks, remove_hooks
from ._report import TaskReport

__all__ = ["TracingHooks", "install"]

_lock = threading.Lock()
_installed: TracingHooks | None = None


def install(tracer_provider: trace.TracerProvider | None = None) -> TracingHooks:
    """Run every task of every runtime of this process in a span, from now on.

    :param tracer_provider: where the spans go; OpenTelemetry's global provider by default
    :return: the hooks installed (installing again returns them, added again if removed;
        with another ``tracer_provider``, new ones replace them)
    """
    global _installed
    with _lock:
        if _installed is None or tracer_provider is not None:
            if _installed is not None:  # replaced: its spans would double the new ones
                remove_hooks(_installed)
            _installed = TracingHooks(trace.get_tracer("offload", tracer_provider=tracer_provider))
        add_hooks(_installed)
        set_injector(_inject_current)
        return _installed


def _inject_current() -> Carrier:
    # Only while the tracing hooks are on: removed, the worker gets no context either.
    carrier: Carrier = {}
    if _installed in global_hooks():
        inject(carrier)
    return carrier


class TracingHooks(TaskHooks):
    """The hooks that run each task in its span: see the module's docstring."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        # Kept per run (see TaskState): runs on several loops and threads keep theirs apart.
        self._parents: TaskState[otel_context.Context] = TaskState("offload.tracing.parents")
        self._spans: TaskState[tuple[trace.Span, Any]] = TaskState("offload.tracing.spans")

    def scheduled(self, task: Call, executor: str) -> None:
        self._parents.put(task.id, otel_context.get_current())

    def started(self, task: Call, executor: str, attempt: int) -> None:
        if attempt > 1:
            running = self._spans.get(task.id)
            if running is not None:
                running[0].add_event("offload.retry", {"offload.attempt": attempt})
            return
        parent = self._parents.pop(task.id)
        span = self._tracer.start_span(
            "offload.task",
            context=parent,
            attributes={
                "offload.task.name": task.name,
                "offload.task.id": task.id,
                "offload.executor": executor,
            },
        )
        # Current while the task runs (here, on its loop; a thread gets a copy of it).
        token = otel_context.attach(trace.set_span_in_context(span))
        self._spans.put(task.id, (span, token))

    def ended(self, report: TaskReport) -> None:
        self._parents.pop(report.id)
        running = self._spans.pop(report.id)
        if running is None:  # it never started: no span
            return
        span, token = running
        span.set_attribute("offload.attempts", report.attempts)
        span.set_attribute("offload.status", report.status)
        if report.error is not None:
            span.record_exception(report.error)
            span.set_status(Status(StatusCode.ERROR, f"{type(report.error).__name__}"))
        span.end()
        otel_context.detach(token)

    def __repr__(self) -> str:
        return "<offload.tracing.TracingHooks>"
