"""The code that runs a task on a Dask worker, so that its progress reaches the server and
its spans join the task's trace.

``set_progress`` there sends an event on a topic of the cluster's (``Worker.log_event``);
the executor's client subscribes to it and hands each event to the task's run. The task's
trace context comes with the call (see :mod:`offload._carrier`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from distributed import get_worker

from .._call import run_to_end
from .._carrier import Carrier, activated
from .._progress import Progress, use_channel

#: The cluster topic progress travels on.
TOPIC = "offload-progress"


def run_reporting_progress(
    task_id: str,
    carrier: Carrier,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """Run a task's call on this Dask worker, sending what it says with ``set_progress``, in
    the trace context of ``carrier``."""
    worker = get_worker()

    def publish(progress: Progress) -> None:
        event = (task_id, progress.done, progress.total, progress.message)
        worker.log_event(TOPIC, event)

    with use_channel(publish), activated(carrier):
        return run_to_end(func, args, kwargs)
