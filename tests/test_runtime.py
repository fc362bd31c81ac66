"""Runtime: which runtime a task list uses, executor lifecycle, drain on close, configure."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import anyio
import pytest

from offload import (
    BackgroundTask,
    BackgroundTasks,
    Executor,
    OffloadConfig,
    Runtime,
    configure,
    register_executor,
)
from offload._runtime import current_runtime
from recording import RecordingExecutor

pytestmark = pytest.mark.anyio


class LifecycleExecutor(RecordingExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def aclose(self) -> None:
        self.events.append("close")


async def test_an_entered_runtime_is_the_one_tasks_use() -> None:
    config = OffloadConfig(on_error="continue")
    async with Runtime(config) as runtime:
        assert current_runtime() is runtime
        assert runtime.config is config
        async with Runtime() as inner:
            assert current_runtime() is inner
        assert current_runtime() is runtime
    assert current_runtime() is not runtime


async def test_without_a_runtime_a_default_one_is_made_once() -> None:
    default = current_runtime()
    assert current_runtime() is default
    tasks = BackgroundTasks([lambda: None])
    await tasks()
    assert tasks.reports[0].status == "succeeded"


async def test_the_default_runtime_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_ON_ERROR", "continue")
    assert current_runtime().config.on_error == "continue"


async def test_configure_sets_the_default_config() -> None:
    before = current_runtime()
    config = OffloadConfig(thread_limit=3)
    configure(config)
    assert current_runtime() is not before
    assert current_runtime().config is config
    assert Runtime().config is config


def test_configure_needs_a_config() -> None:
    with pytest.raises(TypeError, match="configure\\(\\) needs an OffloadConfig, got"):
        configure({"thread_limit": 3})  # type: ignore[arg-type]


async def test_entering_prewarms_and_exiting_closes_the_executors() -> None:
    executor = LifecycleExecutor()
    register_executor("lifecycle", lambda config: executor)
    async with Runtime(OffloadConfig(executor="lifecycle")) as runtime:
        assert executor.events == ["start"]
        assert runtime.executor("lifecycle") is executor
        tasks = BackgroundTasks([lambda: None])
        await tasks()
        assert executor.events == ["start"]  # started once, not per task
    assert executor.events == ["start", "close"]


async def test_an_executor_instance_is_started_on_first_use_and_closed_with_the_runtime() -> None:
    executor = LifecycleExecutor()
    async with Runtime():
        assert executor.events == []
        await BackgroundTasks([lambda: None], executor=executor)()
        await BackgroundTasks([lambda: None], executor=executor)()
        assert executor.events == ["start"]
    assert executor.events == ["start", "close"]


async def test_closing_waits_for_task_lists_in_flight() -> None:
    finished = []

    async def slow() -> None:
        await anyio.sleep(0.2)
        finished.append(True)

    async with anyio.create_task_group() as tg:
        async with Runtime(OffloadConfig(shutdown_timeout=5)):
            tg.start_soon(BackgroundTasks([slow]))
            await anyio.sleep(0.05)
        assert finished == [True]


async def test_closing_logs_the_tasks_it_abandons_by_name(caplog: pytest.LogCaptureFixture) -> None:
    async with anyio.create_task_group() as tg:
        async with Runtime(OffloadConfig(shutdown_timeout=0.1)):
            tasks = BackgroundTasks()
            tasks.add_task(anyio.sleep, 0.5).set(name="long job")
            tasks.add_task(anyio.sleep, 0).set(name="next job")
            tg.start_soon(tasks)
            await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert "Runtime closed with 2 background task(s) unfinished after 0.1s" in caplog.text
    assert "long job, next job" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_failing_executor_close_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenClose(RecordingExecutor):
        async def aclose(self) -> None:
            raise RuntimeError("cannot close")

    async with Runtime():
        await BackgroundTasks([lambda: None], executor=BrokenClose())()
    assert "Closing executor <BrokenClose 'BrokenClose'> failed" in caplog.text


def test_runtime_needs_a_config() -> None:
    with pytest.raises(TypeError, match="config must be an OffloadConfig"):
        Runtime({"executor": "thread"})  # type: ignore[arg-type]


def test_executor_names_default_to_the_class_name() -> None:
    class MyExecutor(Executor):
        async def run(self, task: BackgroundTask) -> Any:
            return None

    assert MyExecutor().name == "MyExecutor"
    assert repr(MyExecutor()) == "<MyExecutor 'MyExecutor'>"


def test_register_executor_refuses_duplicates_naming_both() -> None:
    def first(config: OffloadConfig) -> Executor:
        return RecordingExecutor()

    def second(config: OffloadConfig) -> Executor:
        return RecordingExecutor()

    register_executor("mine", first)
    with pytest.raises(
        ValueError, match=r"'mine' is already registered to .*first; cannot .*second"
    ):
        register_executor("mine", second)
    with pytest.raises(ValueError, match="already registered to offload.executors.thread"):
        register_executor("thread", RecordingExecutor)


@pytest.mark.parametrize("name", ["", "auto", 3])
def test_register_executor_refuses_bad_names(name: object) -> None:
    with pytest.raises(ValueError, match="executor name must be a non-empty string other than"):
        register_executor(name, RecordingExecutor)  # type: ignore[arg-type]


def test_register_executor_refuses_bad_factories() -> None:
    with pytest.raises(TypeError, match="must be an Executor subclass or a callable"):
        register_executor("x", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must subclass offload.Executor"):
        register_executor("x", dict)  # type: ignore[arg-type]


async def test_a_factory_that_returns_junk_is_named() -> None:
    register_executor("junk", lambda config: "not an executor")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned 'not an executor', not an offload.Executor"):
        BackgroundTasks([lambda: None], executor="junk")


async def test_a_registered_class_is_built_from_the_config() -> None:
    class Sized(RecordingExecutor):
        @classmethod
        def from_config(cls, config: OffloadConfig) -> Sized:
            executor = cls()
            executor.prepared.append(f"limit {config.thread_limit}")
            return executor

    register_executor("sized", Sized)
    async with Runtime(OffloadConfig(thread_limit=7)) as runtime:
        executor = runtime.executor("sized")
    assert isinstance(executor, Sized)
    assert executor.prepared == ["limit 7"]
    assert executor.name == "sized"


def test_the_default_runtime_is_closed_at_exit() -> None:
    script = """
import anyio, offload
from offload import BackgroundTasks, Executor, register_executor

class Loud(Executor):
    async def run(self, task): return task.func()
    async def aclose(self): print("closed at exit")

register_executor("loud", Loud)
anyio.run(BackgroundTasks([lambda: None], executor="loud"))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "closed at exit"
