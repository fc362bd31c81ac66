"""Prometheus metrics of offload's tasks, on ``prometheus_client``.

::

    import offload.metrics
    from prometheus_client import make_asgi_app

    offload.metrics.install()  # into prometheus_client's default registry
    app.mount("/metrics", make_asgi_app())

========================================  ===================================================
``offload_tasks_total{executor,status}``  tasks that ended, by how (``succeeded``, ``failed``,
                                          ``timed_out``, ``skipped``, ``cancelled``)
``offload_task_duration_seconds{executor}``  from a task's first start to its end
``offload_task_wait_seconds{executor}``   from a task's scheduling to its first start
``offload_tasks_in_flight{executor}``     tasks started and not yet ended
``offload_detached_pending``              detached task lists pending or running, in the
                                          active runtime
``offload_worker_restarts_total{reason}`` worker processes replaced: ``crash``, ``timeout``,
                                          ``recycle``
========================================  ===================================================

Needs offload's ``prometheus`` extra (``pip install ".[prometheus]"`` in a clone);
``import offload`` never imports it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from ._exceptions import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:
    raise missing_extra("offload.metrics", "prometheus_client", "prometheus", exc) from exc

from anyio.lowlevel import current_token

from ._call import Call
from ._default import current_runtime
from ._hooks import TaskHooks, TaskState, add_hooks
from ._report import TaskReport
from .executors._futures import call_soon

__all__ = ["PrometheusHooks", "install"]

_installed: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusHooks] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def install(registry: CollectorRegistry | None = None) -> PrometheusHooks:
    """Register offload's metrics in ``registry`` (prometheus_client's default registry when
    ``None``), and count every task of every runtime of this process from now on.

    Installing again into the same registry returns the hooks installed there (added again,
    if they were removed with :func:`offload.remove_hooks`).
    """
    registry = REGISTRY if registry is None else registry
    with _lock:
        hooks = _installed.get(registry)
        if hooks is None:
            hooks = _installed[registry] = PrometheusHooks(registry)
        add_hooks(hooks)
        return hooks


class PrometheusHooks(TaskHooks):
    """The hooks that keep offload's metrics: see the module's table."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Counter(
            "offload_tasks_total", "Background tasks that ended, by executor and status.",
            ["executor", "status"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "offload_task_duration_seconds", "Seconds from a task's first start to its end.",
            ["executor"], registry=registry,
        )  # fmt: skip
        self.wait = Histogram(
            "offload_task_wait_seconds", "Seconds from a task's scheduling to its first start.",
            ["executor"], registry=registry,
        )  # fmt: skip
        # livesum: under prometheus_client's multiprocess mode (server workers sharing
        # PROMETHEUS_MULTIPROC_DIR), the gauges add up over the live processes.
        self.in_flight = Gauge(
            "offload_tasks_in_flight", "Background tasks started and not yet ended.",
            ["executor"], registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.detached = Gauge(
            "offload_detached_pending",
            "Detached task lists pending or running in the active runtime.",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        # Read when scraped; in multiprocess mode a scrape reads the processes' files
        # instead, so the hooks write it as tasks are scheduled and end.
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if not self._multiprocess:
            self.detached.set_function(lambda: current_runtime().pending)
        self.restarts = Counter(
            "offload_worker_restarts_total", "Worker processes replaced, by reason.",
            ["reason"], registry=registry,
        )  # fmt: skip
        # Kept per run (see TaskState): runs on several loops and threads keep theirs apart.
        self._scheduled: TaskState[float] = TaskState("offload.metrics.scheduled")
        self._running: TaskState[bool] = TaskState("offload.metrics.running")  # in flight
        # Each metric's child per label values, looked up once: ``labels()`` costs more than
        # the count itself.
        self._per_executor: dict[str, tuple[Any, Any, Any]] = {}
        self._per_outcome: dict[tuple[str, str], Any] = {}

    def _of(self, executor: str) -> tuple[Any, Any, Any]:
        children = self._per_executor.get(executor)
        if children is None:
            children = self._per_executor[executor] = (
                self.wait.labels(executor),
                self.in_flight.labels(executor),
                self.duration.labels(executor),
            )
        return children

    def scheduled(self, task: Call, executor: str) -> None:
        self._scheduled.put(task.id, time.monotonic())
        if self._multiprocess:
            self._count_pending()

    def _count_pending(self) -> None:
        self.detached.set(current_runtime().pending)

    def started(self, task: Call, executor: str, attempt: int) -> None:
        if attempt != 1:
            return
        scheduled = self._scheduled.pop(task.id)
        self._running.put(task.id, True)
        wait, in_flight, _ = self._of(executor)
        if scheduled is not None:
            wait.observe(time.monotonic() - scheduled)
        in_flight.inc()

    def ended(self, report: TaskReport) -> None:
        self._scheduled.pop(report.id)
        _, in_flight, duration = self._of(report.executor)
        if self._running.pop(report.id):
            in_flight.dec()
        if report.started_at is not None:
            duration.observe(report.duration)
        key = (report.executor, report.status)
        counter = self._per_outcome.get(key)
        if counter is None:
            counter = self._per_outcome[key] = self.tasks.labels(*key)
        counter.inc()
        if self._multiprocess:  # once its list has let go of its place in the runtime
            call_soon(current_token(), self._count_pending)

    def worker_restarted(self, executor: str, reason: str) -> None:
        self.restarts.labels(reason).inc()

    def __repr__(self) -> str:
        return "<offload.metrics.PrometheusHooks>"
