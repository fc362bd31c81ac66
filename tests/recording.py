"""An executor that records what it ran, for tests of executor resolution."""

from __future__ import annotations

from typing import Any

from offload import Call, Executor, InlineExecutor


class RecordingExecutor(InlineExecutor):
    """Runs tasks inline and keeps the names of the tasks it ran and prepared."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.prepared: list[str] = []

    def prepare(self, task: Call) -> None:
        self.prepared.append(task.name)

    async def run(self, task: Call) -> Any:
        self.ran.append(task.name)
        return await super().run(task)


def register(*names: str) -> dict[str, RecordingExecutor]:
    """Register one recording executor per name and return them by name."""
    from offload import register_executor

    executors = {name: RecordingExecutor() for name in names}
    for name, executor in executors.items():
        register_executor(name, lambda config, executor=executor: executor)  # type: ignore[misc]
    return executors


__all__ = ["Executor", "RecordingExecutor", "register"]
