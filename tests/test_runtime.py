"""Runtime: which runtime a task list uses, executor lifecycle, drain on close, configure."""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
from typing import Any

import anyio
import pytest

from offload import (
    BackgroundTasks,
    Call,
    Executor,
    OffloadConfig,
    OffloadError,
    Runtime,
    _runtime,
    configure,
    register_executor,
)
from offload._default import current_runtime
from offload._detached import Supervisor
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
        async def run(self, task: Call) -> Any:
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


# Leaving a runtime, whatever the circumstances


async def test_leaving_a_runtime_from_a_cancelled_scope_still_closes_it() -> None:
    executor = LifecycleExecutor()
    register_executor("lifecycle", lambda config: executor)
    runtime = Runtime(OffloadConfig(executor="lifecycle", process_workers=1))
    with anyio.fail_after(20), anyio.move_on_after(0.1):
        async with runtime:
            await anyio.sleep(30)
    assert executor.events == ["start", "close"]
    assert multiprocessing.active_children() == []  # the process pool's workers too
    assert current_runtime() is not runtime
    async with runtime:  # closed, not stuck closing
        pass


async def test_a_cancelled_exit_still_drains_the_detached_lists_within_the_timeout() -> None:
    ran: list[str] = []

    async def slow() -> None:
        await anyio.sleep(0.2)
        ran.append("slow")

    runtime = Runtime(OffloadConfig(shutdown_timeout=30))
    with anyio.fail_after(20), anyio.move_on_after(0.05):
        async with runtime:
            await BackgroundTasks([slow], detach=True)()
            await anyio.sleep(30)
    assert ran == ["slow"]
    async with runtime:  # its detached work was all counted off
        await BackgroundTasks([slow], detach=True)()


async def test_an_interrupted_executor_close_still_closes_the_others_then_propagates() -> None:
    class Interrupted(BaseException):
        pass

    class InterruptedClose(LifecycleExecutor):
        async def aclose(self) -> None:
            await super().aclose()
            raise Interrupted

    first, second = LifecycleExecutor(), InterruptedClose()

    async def use_both() -> None:
        async with Runtime():
            await BackgroundTasks([lambda: None], executor=first)()
            await BackgroundTasks([lambda: None], executor=second)()

    with pytest.raises(Interrupted):
        await use_both()
    assert (first.events, second.events) == (["start", "close"], ["start", "close"])


async def test_an_in_place_list_that_outlives_the_drain_is_cancelled_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    tasks.add_task(anyio.sleep, 30).set(name="long job")
    tasks.add_task(anyio.sleep, 0).set(name="next job")
    with anyio.fail_after(10):  # not cancelled, the list would take 30 s
        async with anyio.create_task_group() as group, Runtime(OffloadConfig(shutdown_timeout=0.1)):
            group.start_soon(tasks)
            await anyio.sleep(0.02)
    assert [r.status for r in tasks.reports] == ["skipped", "skipped"]
    messages = [r.getMessage() for r in caplog.records if r.name == "offload"]
    assert messages == [
        "Runtime closed with 2 background task(s) unfinished after 0.1s: long job, next job"
    ]  # named once, by the runtime that cancelled it


async def test_a_closed_runtime_starts_no_executor() -> None:
    late = LifecycleExecutor()
    release = anyio.Event()

    async def ignores_cancellation() -> None:
        with anyio.CancelScope(shield=True):
            await release.wait()

    tasks = BackgroundTasks(on_error="continue")
    tasks.add_task(ignores_cancellation)
    tasks.add_task(lambda: None).set(executor=late, name="after close")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            async with Runtime(OffloadConfig(shutdown_timeout=0.05)):
                group.start_soon(tasks)
                await anyio.sleep(0.02)
            release.set()
    assert late.events == []  # not started for a runtime nobody will close
    report = tasks.reports[1]
    assert report.status == "failed"
    assert isinstance(report.error, OffloadError)
    assert str(report.error).startswith(
        "the offload Runtime is closed, so it starts no executor ('LifecycleExecutor')"
    )


async def test_a_failed_entry_closes_the_executors_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def cannot_start(self: object) -> None:
        raise RuntimeError("no supervisor today")

    executor = LifecycleExecutor()
    register_executor("lifecycle", lambda config: executor)
    runtime = Runtime(OffloadConfig(executor="lifecycle", process_workers=1))
    with monkeypatch.context() as patch:
        patch.setattr(Supervisor, "start", cannot_start)
        with pytest.raises(RuntimeError, match="no supervisor today"):
            await runtime.__aenter__()
    assert executor.events == ["start", "close"]
    assert multiprocessing.active_children() == []
    assert current_runtime() is not runtime
    async with runtime:  # and it can be entered once the cause is gone
        pass


async def test_executors_start_in_a_fixed_order_and_close_in_reverse() -> None:
    executor = LifecycleExecutor()
    register_executor("lifecycle", lambda config: executor)
    config = OffloadConfig(executor="lifecycle", process_workers=1, preload=("shared_tasks",))
    async with Runtime(config) as runtime:
        started = [e.name for e in runtime._started]
    assert started == ["inline", "thread", "lifecycle", "process"]


async def test_a_detached_task_that_ignores_cancellation_does_not_hang_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_runtime, "CANCEL_GRACE", 0.1)
    release = anyio.Event()

    async def stubborn() -> None:
        with anyio.CancelScope(shield=True):
            await release.wait()

    with anyio.fail_after(10):
        async with Runtime(OffloadConfig(shutdown_timeout=0.05)) as runtime:
            supervisor = runtime._supervisor
            assert supervisor is not None
            tasks = BackgroundTasks(detach=True)
            tasks.add_task(stubborn).set(name="stubborn")
            await tasks()
            await anyio.sleep(0.02)
        (left,) = [r.getMessage() for r in caplog.records if "left behind" in r.getMessage()]
        assert left == (
            "Detached background task(s) still running 0.1s after they were cancelled, left "
            "behind (do they swallow cancellation?): stubborn"
        )
        release.set()
        assert await supervisor.close() == []  # it ends once the task does


# configure() and the default runtime


def test_configure_closes_the_default_runtime_it_replaces() -> None:
    executor = LifecycleExecutor()
    anyio.run(BackgroundTasks([lambda: None], executor=executor))
    old = current_runtime()
    configure(OffloadConfig(thread_limit=3))
    assert executor.events == ["start", "close"]
    assert current_runtime() is not old


async def test_configure_on_an_event_loop_leaves_the_old_default_to_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor = LifecycleExecutor()
    await BackgroundTasks([lambda: None], executor=executor)()
    old = current_runtime()
    configure(OffloadConfig(thread_limit=3))
    assert executor.events == ["start"]
    assert "the old one cannot be closed now; it is closed at exit" in caplog.text
    await old.aclose()  # what exit would do
    assert executor.events == ["start", "close"]


# What a runtime shows


def test_a_runtime_shows_only_its_documented_methods() -> None:
    public = {name for name in dir(Runtime) if not name.startswith("_")}
    # What users call, then what task lists, runs and test recorders talk to it through.
    assert public == {"aclose", "cancel", "config", "executor", "status", "statuses"} | {
        "add_hooks",
        "default_executor",
        "hooks",
        "pending",
        "remove_hooks",
        "check_detach",
        "ensure_started",
        "intercept",
        "reserve",
        "set_interceptor",
        "started",
        "submit",
        "track",
        "untrack",
    }
    for name in public:
        assert getattr(Runtime, name).__doc__, f"Runtime.{name} has no docstring"


def test_a_runtimes_config_is_read_only() -> None:
    runtime = Runtime()
    with pytest.raises(AttributeError):
        runtime.config = OffloadConfig()  # type: ignore[misc]
