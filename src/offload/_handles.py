"""Following a task after the response: its status by id, every status kept, and cancel.

Each asks the runtime task lists use now (see :func:`~offload.Runtime`): the one a lifespan
entered, else the default one.
"""

from __future__ import annotations

from ._default import current_runtime
from ._status import TaskStatus


def status(task_id: str) -> TaskStatus | None:
    """Return the status of the task ``task_id`` (:attr:`BackgroundTask.id`).

    :return: ``None`` if the active runtime does not know the task: never seen, or an
        ended task it has forgotten (it keeps the last ``keep_statuses``)
    """
    if not isinstance(task_id, str):
        return None
    return current_runtime().status(task_id)


def statuses() -> list[TaskStatus]:
    """Return every status the active runtime keeps, newest first."""
    return current_runtime().statuses()


def cancel(task_id: str) -> bool:
    """Cancel the task ``task_id``, from anywhere (an endpoint, another thread).

    A pending task never starts; a running inline task is cancelled at its next ``await``; a
    running process task's worker is killed, with every process the task started, and
    replaced; a running thread task stops being waited for, while its thread runs on to its
    end, holding its ``thread_limit`` token until then (Python cannot stop a thread). The
    task is reported ``"cancelled"``; the rest of its list runs on, and the list's error
    policy does not fire: a cancel is not a failure.

    :return: ``True`` if the task was cancelled; ``False`` if it had already ended, or is
        unknown
    """
    if not isinstance(task_id, str):
        return False
    return current_runtime().cancel(task_id)
