"""The record of how one background task ended."""

from __future__ import annotations

from typing import Literal, NamedTuple

Status = Literal["succeeded", "failed", "timed_out", "skipped", "cancelled"]


class TaskReport(NamedTuple):
    """How one task of a run ended: a frozen record, cheap to make (one per task).

    :ivar id: the task's id (:attr:`BackgroundTask.id`)
    :ivar name: the task's name (its ``name`` option, else the function's qualified name)
    :ivar executor: the name of the executor that ran it, or would have
    :ivar status: ``"succeeded"``, ``"failed"``, ``"timed_out"``, ``"skipped"`` (it did not
        run to its end because an earlier failure ended the run) or ``"cancelled"``
        (:func:`offload.cancel`)
    :ivar error: the exception of a failed or timed-out task, else ``None``
    :ivar started_at: Unix time of the first attempt's start; ``None`` if it never started
    :ivar duration: seconds from the first attempt's start to the end of the last one
    :ivar attempts: how many times it was started (more than one after retries)
    """

    id: str
    name: str
    executor: str
    status: Status
    error: BaseException | None = None
    started_at: float | None = None
    duration: float = 0.0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.status == "succeeded"
