"""Properties of a run over random task lists, on every executor, policy and concurrency mode.

Each example is a list of tasks, each on ``inline``, ``thread`` or ``process``, that succeeds,
fails or times out, run under one of the four policies in one of the two modes. Whatever the
list: one report per task, in declaration order; in sequential mode no task starts before the
previous one ended; ``skipped`` is exactly what the policy says; and what propagates is
exactly what the policy says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fault_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    Call,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    TaskReport,
    TaskTimeout,
    ThreadExecutor,
)

EXECUTORS = ("inline", "thread", "process")
OUTCOMES = ("succeeds", "fails", "times out")
POLICIES = ("raise", "stop", "continue", "collect")
MODES = ("sequential", "group")
STATUS = {"succeeds": "succeeded", "fails": "failed", "times out": "timed_out"}
#: The timeout of a task meant to time out; tasks meant to end have none, so a slow
#: machine cannot turn them into timeouts.
TIMEOUT = 0.05

Spec = tuple[str, str]


class Traced(Executor):
    """Runs tasks on ``inner``, recording when each run starts and ends."""

    def __init__(self, inner: Executor, events: list[tuple[str, str]]) -> None:
        self.inner, self.events, self.name = inner, events, inner.name

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        """Leave ``inner`` alone: the process pool is shared by every example."""

    def prepare(self, task: Call) -> None:
        self.inner.prepare(task)

    async def run(self, task: Call) -> Any:
        self.events.append(("start", task.name))
        try:
            return await self.inner.run(task)
        finally:
            self.events.append(("end", task.name))


async def succeed_on_the_loop() -> str:
    await anyio.lowlevel.checkpoint()
    return "ok"


async def fail_on_the_loop(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise fault_tasks.TaskFailed(message)


#: The call that has each outcome on each executor. A thread cannot be stopped, so the
#: thread's timing-out call is short: it runs on briefly after its timeout.
CALLS: dict[Spec, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    ("inline", "succeeds"): (succeed_on_the_loop, ()),
    ("inline", "fails"): (fail_on_the_loop, ()),
    ("inline", "times out"): (anyio.sleep, (30,)),
    ("thread", "succeeds"): (fault_tasks.succeed, ()),
    ("thread", "fails"): (fault_tasks.fail, ()),
    ("thread", "times out"): (fault_tasks.sleep, (0.3,)),
    ("process", "succeeds"): (fault_tasks.succeed, ()),
    ("process", "fails"): (fault_tasks.fail, ()),
    ("process", "times out"): (fault_tasks.sleep, (30,)),
}


@pytest.fixture
def process() -> Iterator[ProcessExecutor]:
    """One pool of worker processes for every example of a test (not one per example)."""
    executor = ProcessExecutor(2)
    anyio.run(executor.start)
    yield executor
    anyio.run(executor.aclose)


def build(
    specs: list[Spec], process: ProcessExecutor, events: list[tuple[str, str]]
) -> list[BackgroundTask]:
    executors: dict[str, Executor] = {
        "inline": Traced(InlineExecutor(), events),
        "thread": Traced(ThreadExecutor(), events),
        "process": Traced(process, events),
    }
    tasks = []
    for index, (executor, outcome) in enumerate(specs):
        func, args = CALLS[executor, outcome]
        if outcome == "fails":
            args = (f"t{index}",)
        task = BackgroundTask(func, *args).set(executor=executors[executor], name=f"t{index}")
        if outcome == "times out":
            task.set(timeout=TIMEOUT)
        tasks.append(task)
    return tasks


def check_statuses(expected: list[str], reports: list[TaskReport], policy: str, mode: str) -> None:
    statuses = [report.status for report in reports]
    failing = [i for i, status in enumerate(expected) if status != "succeeded"]
    if policy in ("continue", "collect") or not failing:
        assert statuses == expected  # every task ran to its own end
    elif mode == "sequential":
        first = failing[0]  # the first failure ends the run; the rest never start
        assert statuses == expected[: first + 1] + ["skipped"] * (len(expected) - first - 1)
    else:
        # All start together; the first failure, whichever it is, cancels those still running.
        assert all(s in (e, "skipped") for s, e in zip(statuses, expected, strict=True))
        assert any(s in ("failed", "timed_out") for s in statuses)
    for report in reports:
        if report.status == "failed":
            assert isinstance(report.error, fault_tasks.TaskFailed)
            assert str(report.error) == report.name
        elif report.status == "timed_out":
            assert isinstance(report.error, TaskTimeout)
        else:
            assert report.error is None


def check_propagation(raised: BaseException | None, reports: list[TaskReport], policy: str) -> None:
    errors = [report.error for report in reports if report.error is not None]
    if not errors or policy in ("stop", "continue"):
        assert raised is None
    elif policy == "raise":
        assert any(raised is error for error in errors)  # the task's exception itself
    else:
        assert isinstance(raised, ExceptionGroup)
        assert len(raised.exceptions) == len(errors)  # all of them, in declaration order
        assert all(a is b for a, b in zip(raised.exceptions, errors, strict=True))


def check_sequence(events: list[tuple[str, str]], names: list[str]) -> None:
    started = [name for edge, name in events if edge == "start"]
    assert started == names[: len(started)]
    assert events == [(edge, name) for name in started for edge in ("start", "end")]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
# The pool fixture is shared by the examples on purpose: starting workers per example would
# cost more than the examples themselves.
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    specs=st.lists(st.tuples(st.sampled_from(EXECUTORS), st.sampled_from(OUTCOMES)), max_size=5),
    policy=st.sampled_from(POLICIES),
    mode=st.sampled_from(MODES),
)
def test_a_run_keeps_order_reports_and_policy(
    backend: str, process: ProcessExecutor, specs: list[Spec], policy: str, mode: str
) -> None:
    events: list[tuple[str, str]] = []
    tasks = BackgroundTasks(build(specs, process, events), on_error=policy, concurrency=mode)  # type: ignore[arg-type]
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            with anyio.fail_after(30):
                await tasks()
        except Exception as exc:
            raised.append(exc)

    anyio.run(run, backend=backend)
    names = [f"t{index}" for index in range(len(specs))]
    assert [report.name for report in tasks.reports] == names  # one each, in order
    check_statuses([STATUS[outcome] for _, outcome in specs], tasks.reports, policy, mode)
    check_propagation(raised[0] if raised else None, tasks.reports, policy)
    if mode == "sequential":
        check_sequence(events, names)
