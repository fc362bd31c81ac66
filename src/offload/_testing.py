"""What the pytest plugin hands to tests: a runtime that keeps its reports, and a recorder.

Nothing here imports pytest, so these work in any test runner.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._config import OffloadConfig
from ._report import TaskReport
from ._runner import PlannedTask, TaskRun
from ._runtime import Runtime, default_config

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from ._detached import Run


class ObservedRuntime(Runtime):
    """A runtime that keeps every report, and knows which failures a test has looked at.

    :ivar portal: the portal whose event loop entered this runtime, if any
    """

    def __init__(self, config: OffloadConfig | None = None) -> None:
        config = config or default_config()
        super().__init__(config.replace(on_report=self._observe))
        self._hook = config.on_report  # still called, once the report is kept
        self._reports: list[TaskReport] = []
        self._looked_at = 0
        self.portal: BlockingPortal | None = None

    @property
    def reports(self) -> list[TaskReport]:
        """Every report so far, in the order the tasks ended (reading them counts as a look)."""
        self._looked_at = len(self._reports)
        return list(self._reports)

    @property
    def failures(self) -> list[TaskReport]:
        """The reports of failed and timed-out tasks so far (reading them counts as a look)."""
        return [report for report in self.reports if report.error is not None]

    def unseen_failures(self) -> list[TaskReport]:
        """Return the failures that came after the test last read ``reports`` or ``failures``."""
        return [report for report in self._reports[self._looked_at :] if report.error is not None]

    def _observe(self, report: TaskReport) -> None:
        self._reports.append(report)
        if self._hook is not None:
            self._hook(report)


@dataclass(frozen=True, slots=True)
class RecordedTask:
    """A task that was scheduled while a recorder was on, and the executor it resolved to."""

    task: PlannedTask
    executor: str

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def func(self) -> Callable[..., Any]:
        return self.task.func

    @property
    def args(self) -> tuple[Any, ...]:
        return self.task.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.task.kwargs)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def timeout(self) -> float | None:
        return self.task.timeout

    @property
    def retries(self) -> int | None:
        return self.task.retries

    def __repr__(self) -> str:
        call = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"<RecordedTask {self.name}({', '.join(call)}) on {self.executor!r}>"


class TaskRecorder:
    """Takes the task lists scheduled while it is on, instead of running them.

    ``tasks`` lists what was scheduled; :meth:`run_all` (or ``await``-ed :meth:`arun_all`)
    runs it for real, each list with its own order and error policy, and returns the reports.
    """

    def __init__(self, runtime: ObservedRuntime) -> None:
        self._runtime = runtime
        self._runs: list[TaskRun] = []
        runtime.set_interceptor(self._record)

    def _record(self, run: Run) -> None:
        assert isinstance(run, TaskRun)
        self._runs.append(run)

    @property
    def tasks(self) -> list[RecordedTask]:
        """Every task scheduled and not yet run, in the order it was scheduled."""
        return [
            RecordedTask(task, executor.name)
            for run in self._runs
            for task, executor in zip(run.tasks, run.executors, strict=True)
        ]

    async def arun_all(self) -> list[TaskReport]:
        """Run the recorded task lists in order on the current event loop; return their reports.

        A list whose policy raises (``"raise"``, ``"collect"``) raises here, as in the app.
        """
        reports: list[TaskReport] = []
        while self._runs:
            run = self._runs.pop(0)
            try:
                await run.execute()
            finally:
                reports.extend(run.reports)
        return reports

    def run_all(self) -> list[TaskReport]:
        """Run the recorded task lists from synchronous code; see :meth:`arun_all`."""
        portal = self._runtime.portal
        if portal is None:
            return anyio.run(self.arun_all)
        return portal.call(self.arun_all)


def describe_failures(reports: list[TaskReport]) -> str:
    """Explain failed task reports with their tracebacks, for a test failure message."""
    parts = []
    for report in reports:
        assert report.error is not None
        trace = "".join(traceback.format_exception(report.error))
        parts.append(
            f"background task {report.name!r} {report.status} on {report.executor}:\n{trace}"
        )
    return "\n".join(parts)
