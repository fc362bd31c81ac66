"""The process executor, with real worker processes on both event loops."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import process_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    NotPicklable,
    OffloadConfig,
    OffloadError,
    ProcessExecutor,
    Runtime,
    TaskTimeout,
    WorkerCrashed,
    task_options,
)
from offload.executors._pickling import RemoteTraceback
from processes import pid_exists

TESTS = Path(__file__).parent


def config(**changes: Any) -> OffloadConfig:
    return OffloadConfig(process_workers=2, **changes)


async def call(executor: ProcessExecutor, func: Callable[..., Any], *args: Any) -> Any:
    return await executor.run(BackgroundTask(func, *args))


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a script in a fresh interpreter (and so with a fresh fork server)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# Early pickling


def local_function() -> Callable[[], None]:
    def inner() -> None:
        pass

    return inner


@pytest.mark.parametrize(
    ("func", "args", "culprit", "fix"),
    [
        (lambda: None, (), "<lambda>", "define it at module level"),
        (local_function(), (), "local_function.<locals>.inner", "define it at module level"),
        (process_tasks.unwrap, (threading.Lock(),), "argument 0 (a _thread.lock)", "pass"),
    ],
    ids=["lambda", "local-function", "lock-argument"],
)
def test_add_task_pickles_the_call_and_names_what_does_not_pickle(
    func: Callable[..., Any], args: tuple[Any, ...], culprit: str, fix: str
) -> None:
    tasks = BackgroundTasks(executor="process")
    with pytest.raises(NotPicklable, match="cannot be pickled") as caught:
        tasks.add_task(func, *args)
    message = str(caught.value)
    assert "process task '" in message
    assert culprit in message
    assert fix in message
    assert tasks.tasks == []


def test_an_unpicklable_keyword_argument_is_named() -> None:
    with socket.socket() as sock:
        task = BackgroundTask(process_tasks.add, 1, b=sock)  # type: ignore[arg-type]
        match = r"keyword argument 'b' \(a socket\.socket\) does not pickle"
        with pytest.raises(NotPicklable, match=match):
            task.set(executor="process")


def test_a_task_list_bound_to_process_pickles_the_tasks_it_gets() -> None:
    with pytest.raises(NotPicklable, match=r"<lambda>' cannot be pickled"):
        BackgroundTasks([BackgroundTask(lambda: None)], executor="process")


def test_task_options_with_process_pickles_at_construction() -> None:
    @task_options(executor="process")
    def render() -> None:
        pass

    with pytest.raises(NotPicklable, match="'test_task_options_with_process_pickles_at_cons"):
        BackgroundTask(render)


@pytest.mark.anyio
async def test_the_call_is_pickled_once_and_those_bytes_reach_the_worker() -> None:
    before = process_tasks.pickled
    async with Runtime(config()) as runtime:
        tasks = BackgroundTasks(executor="process")
        task = tasks.add_task(process_tasks.unwrap, process_tasks.CountingArg(42))
        payload = task.payload
        assert isinstance(payload, bytes)
        assert process_tasks.pickled == before + 1
        assert await runtime.executor("process").run(task) == 42
        await tasks()
    assert task.payload is payload
    assert process_tasks.pickled == before + 1
    assert tasks.reports[0].status == "succeeded"


# Results and errors


@pytest.mark.anyio
async def test_return_values_come_back() -> None:
    async with ProcessExecutor(2) as executor:
        assert await call(executor, process_tasks.add, 2, 3) == 5
        assert await call(executor, process_tasks.pid) != os.getpid()


@pytest.mark.anyio
async def test_a_coroutine_function_runs_with_asyncio_run_in_the_worker() -> None:
    async with ProcessExecutor(1) as executor:
        assert await call(executor, process_tasks.add_async, 2, 3) == (5, "_UnixSelectorEventLoop")


@pytest.mark.anyio
async def test_an_exception_keeps_its_type_and_carries_the_worker_traceback() -> None:
    async with ProcessExecutor(1) as executor:
        with pytest.raises(ValueError, match="^broken$") as caught:
            await call(executor, process_tasks.fail, "broken")
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail\n    raise ValueError(message)" in cause.text


@pytest.mark.anyio
async def test_a_failure_is_logged_with_the_worker_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Runtime(config()):
        tasks = BackgroundTasks(executor="process", on_error="continue")
        tasks.add_task(process_tasks.fail, "broken")
        await tasks()
    assert tasks.reports[0].status == "failed"
    assert "RemoteTraceback" in caplog.text
    assert "raise ValueError(message)" in caplog.text


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (process_tasks.fail_unpicklable_exception, "LockedError: holds a lock .*cannot be pickled"),
        (process_tasks.fail_two_arg_error, "TwoArgError: 7: needs two arguments .*unpickled"),
        (process_tasks.exit_worker, "raised SystemExit: 3$"),
        (process_tasks.return_lock, "returned a _thread.lock that cannot be pickled"),
    ],
    ids=["unpicklable-exception", "exception-not-unpicklable", "system-exit", "unpicklable-value"],
)
@pytest.mark.anyio
async def test_what_cannot_cross_back_becomes_offload_error_and_keeps_the_worker(
    func: Callable[[], Any], expected: str
) -> None:
    async with ProcessExecutor(1) as executor:
        worker = await call(executor, process_tasks.pid)
        with pytest.raises(OffloadError, match=expected) as caught:
            await call(executor, func)
        assert await call(executor, process_tasks.pid) == worker
    assert type(caught.value) is OffloadError
    if func is not process_tasks.return_lock:
        assert isinstance(caught.value.__cause__, RemoteTraceback)
        assert func.__name__ in caught.value.__cause__.text


# Crashes


@pytest.mark.parametrize(
    ("how", "exitcode", "said"),
    [
        ("exit", 1, "exited with code 1"),
        ("sigkill", -9, "SIGKILL often means the system ran out of memory"),
        ("segfault", -11, "SIGSEGV"),
    ],
    ids=["os._exit", "sigkill", "segfault"],
)
@pytest.mark.anyio
async def test_a_crash_fails_only_its_own_task(how: str, exitcode: int, said: str) -> None:
    async with Runtime(config()):
        tasks = BackgroundTasks(executor="process", concurrency="group", on_error="continue")
        tasks.add_task(process_tasks.crash, how)
        tasks.add_task(process_tasks.sleep_then_pid, 0.5)  # runs next to the crash
        tasks.add_task(process_tasks.sleep_then_pid, 0.0)  # queued behind them
        await tasks()
        crashed, beside, queued = tasks.reports
        assert isinstance(crashed.error, WorkerCrashed)
        assert crashed.error.exitcode == exitcode
        assert said in str(crashed.error)
        assert "died while running task 'crash'" in str(crashed.error)
        assert (beside.status, queued.status) == ("succeeded", "succeeded")

        after = BackgroundTasks(executor="process")
        after.add_task(process_tasks.add, 1, 2)
        await after()
        assert after.reports[0].status == "succeeded"


@pytest.mark.anyio
async def test_a_crash_by_signal_names_the_signal() -> None:
    async with ProcessExecutor(1) as executor:
        with pytest.raises(WorkerCrashed) as caught:
            await call(executor, process_tasks.crash, "sigkill")
    assert caught.value.exitcode == -signal.SIGKILL
    assert caught.value.signal == signal.SIGKILL


@pytest.mark.anyio
async def test_workers_ignore_ctrl_c_so_the_server_can_drain_them() -> None:
    async with ProcessExecutor(1) as executor:
        assert await call(executor, process_tasks.interrupt_self) == "still running"


@pytest.mark.anyio
async def test_a_worker_that_died_while_idle_is_replaced_without_failing_a_task() -> None:
    async with ProcessExecutor(1) as executor:
        worker = await call(executor, process_tasks.pid)
        os.kill(worker, 9)
        await anyio.sleep(0.5)  # time for its pool to notice
        assert await call(executor, process_tasks.add, 1, 2) == 3


# Timeouts


@pytest.mark.anyio
async def test_a_timeout_kills_the_worker_and_the_next_task_runs_at_once(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with Runtime(config()):
        tasks = BackgroundTasks(executor="process", concurrency="group", on_error="continue")
        tasks.add_task(process_tasks.spin_forever, str(pid_file)).set(timeout=0.5)
        tasks.add_task(process_tasks.sleep_then_pid, 1.0)  # undisturbed by the kill
        await tasks()
        timed_out, beside = tasks.reports
        assert timed_out.status == "timed_out"
        assert isinstance(timed_out.error, TaskTimeout)
        assert timed_out.duration < 5
        assert beside.status == "succeeded"
        assert not pid_exists(int(pid_file.read_text()))

        start = time.perf_counter()
        after = BackgroundTasks(executor="process")
        after.add_task(process_tasks.add, 1, 2)
        await after()
        assert after.reports[0].status == "succeeded"
        assert time.perf_counter() - start < 5


@pytest.mark.anyio
async def test_cancelling_a_queued_task_leaves_the_workers_alone() -> None:
    async with ProcessExecutor(1) as executor:
        worker = await call(executor, process_tasks.pid)
        async with anyio.create_task_group() as group:
            group.start_soon(call, executor, process_tasks.sleep_then_pid, 0.5)
            await anyio.sleep(0.1)
            with anyio.move_on_after(0.1):
                await call(executor, process_tasks.pid)  # waits for the only worker
        assert await call(executor, process_tasks.pid) == worker


# Workers: recycling, lifecycle, start method, preload


@pytest.mark.anyio
async def test_max_tasks_per_child_recycles_workers() -> None:
    async with ProcessExecutor(1, max_tasks_per_child=2) as executor:
        pids = [await call(executor, process_tasks.pid) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert not any(pid_exists(pid) for pid in pids)


@pytest.mark.anyio
async def test_start_is_idempotent_and_safe_to_call_concurrently() -> None:
    executor = ProcessExecutor(2)
    async with anyio.create_task_group() as group:
        group.start_soon(executor.start)
        group.start_soon(executor.start)
    await executor.start()
    first = {p.pid for p in multiprocessing.active_children()}
    assert len(first) == 2
    await executor.aclose()
    await executor.aclose()
    assert multiprocessing.active_children() == []

    await executor.start()  # works again after aclose
    second = {p.pid for p in multiprocessing.active_children()}
    assert len(second) == 2
    assert not first & second
    await executor.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "changes",
    [{"executor": "process"}, {"preload": ("process_tasks",)}],
    ids=["executor", "preload"],
)
async def test_a_runtime_prewarms_the_workers_of_a_config_that_names_them(
    changes: dict[str, Any],
) -> None:
    async with Runtime(config(**changes)):
        assert len(multiprocessing.active_children()) == 2
    assert multiprocessing.active_children() == []


@pytest.mark.anyio
async def test_a_runtime_starts_workers_only_once_a_task_uses_them() -> None:
    async with Runtime(config()):
        assert multiprocessing.active_children() == []
        await BackgroundTasks([BackgroundTask(process_tasks.add, 1, 2)], executor="thread")()
        assert multiprocessing.active_children() == []
        tasks = BackgroundTasks([BackgroundTask(process_tasks.add, 1, 2)], executor="process")
        await tasks()
        assert tasks.reports[0].ok
        assert len(multiprocessing.active_children()) == 2
    assert multiprocessing.active_children() == []


@pytest.mark.anyio
async def test_closing_stops_a_running_task_and_fails_a_waiting_one(tmp_path: Path) -> None:
    executor = ProcessExecutor(1)
    await executor.start()
    errors: list[BaseException] = []

    async def run(func: Callable[..., Any], *args: Any) -> None:
        try:
            await call(executor, func, *args)
        except OffloadError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run, process_tasks.spin_forever, str(tmp_path / "pid"))
        await anyio.sleep(0.2)
        group.start_soon(run, process_tasks.add, 1, 2)
        await anyio.sleep(0.2)
        await executor.aclose()
    messages = sorted(str(error) for error in errors)
    assert "closed before task 'add' got a worker" in messages[0]
    assert "closed while task 'spin_forever' ran" in messages[1]


def test_from_config_reads_the_process_fields() -> None:
    executor = ProcessExecutor.from_config(
        OffloadConfig(
            process_workers=3, start_method="spawn", preload=("json",), max_tasks_per_child=5
        )
    )
    assert (executor.workers, executor.start_method) == (3, "spawn")
    assert (executor.preload, executor.max_tasks_per_child) == (("json",), 5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver is Linux's default")
@pytest.mark.anyio
async def test_workers_come_from_the_fork_server_by_default_and_spawn_when_asked() -> None:
    assert ProcessExecutor().start_method == "forkserver"
    async with ProcessExecutor(1) as executor:
        assert await call(executor, process_tasks.parent_pid) != os.getpid()
    async with ProcessExecutor(1, start_method="spawn") as executor:
        assert await call(executor, process_tasks.parent_pid) == os.getpid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver is Linux's default")
@pytest.mark.parametrize("how", ["task-module", "config"])
def test_the_fork_server_preloads_the_task_modules(tmp_path: Path, how: str) -> None:
    preload = "('process_tasks',)" if how == "config" else "()"
    prepare = "executor.prepare(task)" if how == "task-module" else ""
    result = run_script(
        tmp_path,
        f"""
        import anyio
        import process_tasks
        from offload import BackgroundTask, ProcessExecutor

        async def main() -> None:
            executor = ProcessExecutor(1, preload={preload})
            task = BackgroundTask(process_tasks.imported_in)
            {prepare}
            async with executor:
                imported_in, parent = await executor.run(task)
            print(imported_in == parent)

        if __name__ == "__main__":
            anyio.run(main)
        """,
    )
    assert result.stdout.strip() == "True"


# Output and logging


def test_stdout_stderr_and_log_records_reach_the_parent(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import anyio
        import process_tasks
        from offload import BackgroundTasks, OffloadConfig, Runtime

        async def main() -> None:
            async with Runtime(OffloadConfig(process_workers=1)):
                tasks = BackgroundTasks(executor="process")
                tasks.add_task(process_tasks.chatter, "hello")
                await tasks()

        if __name__ == "__main__":
            anyio.run(main)
        """,
    )
    assert "stdout hello" in result.stdout
    assert "stderr hello" in result.stderr
    assert "log hello from" in result.stderr


@pytest.mark.anyio
async def test_log_records_go_to_the_parents_loggers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="process_tasks")
    async with ProcessExecutor(1) as executor:
        worker = await call(executor, process_tasks.pid)
        await call(executor, process_tasks.chatter, "forwarded")
    records = [r for r in caplog.records if r.name == "process_tasks"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", f"log forwarded from {worker}")
    ]
    assert records[0].process == worker
