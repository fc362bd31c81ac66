"""Fault injection with real worker processes and a real server: nothing is lost unnoticed.

For each fault: what the user sees (report, log line, exception) is checked, later tasks
run, and no worker process or offload thread outlives the test.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import fault_tasks
import offload
from offload import (
    BackgroundTask,
    BackgroundTasks,
    OffloadConfig,
    OffloadError,
    PoolExecutor,
    Runtime,
    TaskTimeout,
    WorkerCrashed,
    _default,
)
from offload.starlette import PlainTextResponse
from processes import pid_exists
from servers import serve

#: Real processes: one event loop is enough where the loop plays no part.
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture(autouse=True)
def _nothing_leaked() -> Iterator[None]:
    """Fail a test that leaves a worker process, or a thread of offload or uvicorn, alive."""
    yield
    _default.reset()  # the default runtime is closed here, before the check, not after it
    assert multiprocessing.active_children() == []
    deadline = time.monotonic() + 10
    while (leftover := ours()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leftover == []


def ours() -> list[str]:
    prefixes = ("offload-", "uvicorn")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "offload" and r.levelno >= logging.ERROR]


def wait_until(condition: Callable[[], object], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def marks(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


# Workers that die


@pytest.mark.parametrize(
    ("how", "exitcode", "said"),
    [
        ("sigkill", -9, "it was killed by SIGKILL; SIGKILL often means the system ran out"),
        ("exit", 70, "it exited with code 70 (os._exit() or a fatal error in native code)"),
        ("segfault", -11, "it was killed by SIGSEGV; a crash in native code"),
    ],
    ids=["SIGKILL", "os._exit", "segfault"],
)
@asyncio_only
@pytest.mark.anyio
async def test_a_dying_worker_fails_only_its_task_and_the_next_ones_run(
    how: str, exitcode: int, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(OffloadConfig(process_workers=2, on_error="continue")):
        tasks = BackgroundTasks(executor="process")
        tasks.add_task(fault_tasks.crash, how)
        tasks.add_task(fault_tasks.pid)
        tasks.add_task(fault_tasks.succeed).set(executor="thread")
        await tasks()
    crashed, next_in_process, next_in_thread = tasks.reports
    assert crashed.status == "failed"
    assert isinstance(crashed.error, WorkerCrashed)
    assert crashed.error.exitcode == exitcode
    assert "died while running task 'crash': " + said in str(crashed.error)
    (record,) = failures(caplog)
    assert record.getMessage() == "Background task 'crash' failed on the process executor"
    assert record.exc_info is not None
    assert record.exc_info[1] is crashed.error
    assert (next_in_process.status, next_in_thread.status) == ("succeeded", "succeeded")


@asyncio_only
@pytest.mark.anyio
async def test_many_crashes_in_a_row_leave_the_executor_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Runtime(OffloadConfig(process_workers=2, on_error="continue")) as runtime:
        crashes = BackgroundTasks(executor="process", concurrency="group")
        for how in ["sigkill", "exit", "segfault"] * 4:
            crashes.add_task(fault_tasks.crash, how)
        await crashes()
        process = runtime.executor("process")
        pids = {await process.run(BackgroundTask(fault_tasks.pid)) for _ in range(4)}
    assert [r.status for r in crashes.reports] == ["failed"] * 12
    assert all(isinstance(r.error, WorkerCrashed) for r in crashes.reports)
    assert len(failures(caplog)) == 12
    assert 1 <= len(pids) <= 2  # the two slots' new workers, reused


# Tasks that hang


@asyncio_only
@pytest.mark.anyio
async def test_a_hung_process_task_times_out_and_its_worker_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "pid"
    async with Runtime(OffloadConfig(process_workers=1, on_error="continue")):
        tasks = BackgroundTasks(executor="process")
        tasks.add_task(fault_tasks.hang, str(pid_file)).set(timeout=0.5)
        tasks.add_task(fault_tasks.succeed)
        with anyio.fail_after(30):
            await tasks()
    hung, after = tasks.reports
    assert hung.status == "timed_out"
    assert isinstance(hung.error, TaskTimeout)
    (record,) = failures(caplog)
    assert record.getMessage() == (
        "Background task 'hang' timed out: background task 'hang' timed out after 0.5s "
        "on the process executor"
    )
    assert not pid_exists(int(pid_file.read_text()))
    assert after.status == "succeeded"


@pytest.mark.anyio
async def test_a_hung_thread_task_times_out_and_the_next_runs() -> None:
    release, ended = threading.Event(), threading.Event()

    def hang_until_released() -> None:
        release.wait(30)
        ended.set()

    tasks = BackgroundTasks(executor="thread", on_error="continue")
    tasks.add_task(hang_until_released).set(timeout=0.1)
    tasks.add_task(fault_tasks.succeed)
    try:
        with anyio.fail_after(10):
            await tasks()
        assert [r.status for r in tasks.reports] == ["timed_out", "succeeded"]
        assert not ended.is_set()  # a thread cannot be stopped: it runs on, reported already
    finally:
        release.set()
    assert ended.wait(10)  # released, the thread ends: nothing is left running


# What cannot cross back from a worker


@asyncio_only
@pytest.mark.anyio
async def test_an_exception_that_cannot_be_unpickled_breaks_a_plain_pool() -> None:
    # Why offload never lets a worker's exception reach ProcessPoolExecutor's own unpickling.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        with pytest.raises(BrokenProcessPool):
            pool.submit(fault_tasks.raise_needs_arguments).result(timeout=30)
        with pytest.raises(BrokenProcessPool):
            pool.submit(fault_tasks.pid)


def pool_executor() -> PoolExecutor:
    context = multiprocessing.get_context("forkserver")
    return PoolExecutor(lambda: ProcessPoolExecutor(1, mp_context=context))


@pytest.mark.parametrize("make", [lambda: "process", pool_executor], ids=["process", "pool"])
@asyncio_only
@pytest.mark.anyio
async def test_an_exception_that_cannot_be_unpickled_fails_only_its_task(
    make: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(OffloadConfig(process_workers=1)) as runtime:
        executor = runtime.executor(make())
        before = await executor.run(BackgroundTask(fault_tasks.pid))
        tasks = BackgroundTasks(executor=executor, on_error="continue")
        tasks.add_task(fault_tasks.raise_needs_arguments)
        await tasks()
        after = await executor.run(BackgroundTask(fault_tasks.pid))
    (report,) = tasks.reports
    assert type(report.error) is OffloadError
    assert str(report.error).startswith(
        "process task 'raise_needs_arguments' raised fault_tasks.NeedsArguments: 7: needs two "
        "arguments (the exception cannot be unpickled in the parent: TypeError"
    )
    assert "raise NeedsArguments(7" in caplog.text  # the worker's traceback, as text
    assert after == before  # the same worker: nothing broke


@asyncio_only
@pytest.mark.anyio
async def test_an_unpicklable_return_value_fails_its_task_and_keeps_the_worker() -> None:
    async with Runtime(OffloadConfig(process_workers=1)) as runtime:
        process = runtime.executor("process")
        before = await process.run(BackgroundTask(fault_tasks.pid))
        tasks = BackgroundTasks(executor="process", on_error="continue")
        tasks.add_task(fault_tasks.return_unpicklable)
        await tasks()
        after = await process.run(BackgroundTask(fault_tasks.pid))
    (report,) = tasks.reports
    assert report.status == "failed"
    assert str(report.error) == (
        "process task 'return_unpicklable' returned a _thread.lock that cannot be pickled "
        "(TypeError: cannot pickle '_thread.lock' object); return plain data instead"
    )
    assert after == before


# SystemExit and KeyboardInterrupt raised by a task


async def exit_on_the_loop(code: int) -> None:
    await anyio.lowlevel.checkpoint()
    raise SystemExit(code)


async def interrupt_on_the_loop() -> None:
    await anyio.lowlevel.checkpoint()
    raise KeyboardInterrupt


EXITS: dict[tuple[str, str], tuple[Callable[..., Any], tuple[Any, ...]]] = {
    ("SystemExit", "inline"): (exit_on_the_loop, (3,)),
    ("SystemExit", "thread"): (fault_tasks.exit_task, (3,)),
    ("SystemExit", "process"): (fault_tasks.exit_task, (3,)),
    ("KeyboardInterrupt", "inline"): (interrupt_on_the_loop, ()),
    ("KeyboardInterrupt", "thread"): (fault_tasks.interrupt_task, ()),
    ("KeyboardInterrupt", "process"): (fault_tasks.interrupt_task, ()),
}


@pytest.mark.parametrize(("kind", "executor"), list(EXITS), ids="-".join)
@pytest.mark.anyio
async def test_system_exit_and_keyboard_interrupt_in_a_task_are_reported_as_failures(
    kind: str, executor: str, caplog: pytest.LogCaptureFixture
) -> None:
    func, args = EXITS[kind, executor]
    said = "SystemExit: 3" if kind == "SystemExit" else "KeyboardInterrupt"
    async with Runtime(OffloadConfig(process_workers=1)):
        tasks = BackgroundTasks(executor=executor, on_error="continue")
        tasks.add_task(func, *args).set(name="exits")
        tasks.add_task(fault_tasks.succeed)
        await tasks()
        # Under "raise", what reaches the caller (the server) is an ordinary exception.
        raising = BackgroundTasks(executor=executor)
        raising.add_task(func, *args).set(name="exits")
        with pytest.raises(OffloadError, match=f"task 'exits' raised {said}"):
            await raising()
    exited, after = tasks.reports
    assert exited.status == "failed"
    assert type(exited.error) is OffloadError
    assert after.status == "succeeded"
    if executor != "process":  # a worker's exception arrives as text instead
        assert isinstance(exited.error.__cause__, SystemExit | KeyboardInterrupt)
        assert str(exited.error).endswith(
            "a task cannot stop the server, so it is reported as a failure"
        )
    assert [r.getMessage() for r in failures(caplog)] == [
        f"Background task 'exits' failed on the {executor} executor"
    ] * 2


class NotAnException(BaseException):
    """Neither an Exception nor an exit: what a careless library might raise."""


@pytest.mark.anyio
async def test_any_other_base_exception_is_a_failure_and_spares_other_detached_lists() -> None:
    async def odd() -> None:
        raise NotAnException("odd")

    async with Runtime(OffloadConfig(process_workers=1)):
        first = BackgroundTasks(detach=True)
        first.add_task(odd).set(name="odd")
        await first()
        second = BackgroundTasks([fault_tasks.succeed], detach=True)
        await second()
    (failed,) = first.reports
    assert failed.status == "failed"
    assert str(failed.error).startswith("background task 'odd' raised NotAnException: odd;")
    assert [r.status for r in second.reports] == ["succeeded"]


def test_a_server_keeps_serving_through_crashes_exits_and_interrupts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults: dict[str, tuple[Callable[..., Any], tuple[Any, ...], str]] = {
        "crash": (fault_tasks.crash, ("sigkill",), "process"),
        "exit": (fault_tasks.exit_task, (3,), "thread"),
        "interrupt": (interrupt_on_the_loop, (), "inline"),
    }

    async def endpoint(request: Request) -> PlainTextResponse:
        fault, detach = request.path_params["fault"], request.query_params["detach"]
        func, args, executor = faults[fault]
        return PlainTextResponse(
            fault,
            backgrounds=[
                BackgroundTask(func, *args).set(executor=executor, name=fault),
                BackgroundTask(fault_tasks.mark, str(tmp_path), f"after {fault} {detach}"),
            ],
            on_error="continue",
            detach=detach == "yes",
        )

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    config = OffloadConfig(process_workers=1)
    routes = [Route("/", ping), Route("/{fault}", endpoint)]
    app = Starlette(routes=routes, lifespan=offload.lifespan(config))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for detach in ("no", "yes"):
            for fault in faults:
                assert client.get(f"/{fault}", params={"detach": detach}).text == fault
        wait_until(lambda: len(marks(tmp_path)) == 6)
        assert client.get("/").text == "pong"  # the server still serves
    assert marks(tmp_path) == {f"after {f} {d}" for f in faults for d in ("no", "yes")}
    assert sorted(r.getMessage() for r in failures(caplog)) == sorted(
        [
            "Background task 'crash' failed on the process executor",
            "Background task 'exit' failed on the thread executor",
            "Background task 'interrupt' failed on the inline executor",
        ]
        * 2
    )
    assert "task 'exit' raised SystemExit: 3" in caplog.text
    assert "task 'interrupt' raised KeyboardInterrupt" in caplog.text


# The client goes away


def test_detached_tasks_run_when_the_client_disconnects_before_the_response(
    tmp_path: Path,
) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        await anyio.sleep(0.3)  # the client has given up by now
        return PlainTextResponse(
            "too late for the client",
            backgrounds=[BackgroundTask(fault_tasks.mark, str(tmp_path), "ran")],
            detach=True,
        )

    config = OffloadConfig(process_workers=1)
    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(config))
    with serve(app) as url:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(url, timeout=0.05)
        wait_until(lambda: marks(tmp_path) == {"ran"})


# The server shuts down while tasks run


def test_a_server_shut_down_mid_task_drains_its_detached_tasks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        n = request.query_params["n"]
        return PlainTextResponse(
            "accepted",
            backgrounds=[
                BackgroundTask(fault_tasks.sleep_then_mark, 0.3, str(tmp_path), f"process {n}"),
                BackgroundTask(fault_tasks.sleep_then_mark, 0.3, str(tmp_path), f"thread {n}"),
            ],
            executor=lambda task: "process" if "process" in task.args[2] else "thread",
            concurrency="group",
        )

    config = OffloadConfig(process_workers=2, detach=True, shutdown_timeout=30)
    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(config))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for n in range(5):
            assert client.get("/", params={"n": n}).text == "accepted"
        assert len(marks(tmp_path)) < 10  # leaving now shuts the server down mid-task
    expected = {f"{kind} {n}" for kind in ("process", "thread") for n in range(5)}
    assert marks(tmp_path) == expected  # every task ran, once
    assert failures(caplog) == []


def test_a_server_shut_down_past_its_timeout_names_every_abandoned_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "pid"

    async def endless() -> None:
        await anyio.sleep_forever()

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "accepted",
            backgrounds=[
                BackgroundTask(fault_tasks.hang, str(pid_file)).set(
                    executor="process", name="hang in a worker"
                ),
                BackgroundTask(endless).set(name="sleep on the loop"),
                BackgroundTask(fault_tasks.succeed).set(name="never started"),
            ],
        )

    config = OffloadConfig(process_workers=1, detach=True, shutdown_timeout=0.5)
    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(config))
    with serve(app) as url:
        assert httpx.get(url, timeout=30).text == "accepted"
        wait_until(pid_file.exists)
        started = time.monotonic()
    assert time.monotonic() - started < 20  # the drain gave up after 0.5 s
    assert [r.getMessage() for r in failures(caplog)] == [
        "Runtime closed with 3 background task(s) unfinished after 0.5s: "
        "hang in a worker, sleep on the loop, never started"
    ]
    wait_until(lambda: not pid_exists(int(pid_file.read_text())))  # the worker was killed


def test_a_server_that_cancels_requests_at_shutdown_names_their_in_place_tasks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()

    async def endless() -> None:
        started.set()
        await anyio.sleep_forever()

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "accepted",
            backgrounds=[
                BackgroundTask(endless).set(name="held by the request"),
                BackgroundTask(fault_tasks.succeed).set(name="next in the request"),
            ],
        )

    config = OffloadConfig(process_workers=1, shutdown_timeout=5)
    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(config))
    with serve(app, timeout_graceful_shutdown=0.3) as url:
        assert httpx.get(url, timeout=30).text == "accepted"
        assert started.wait(20)
    (record,) = failures(caplog)
    assert record.getMessage().startswith(
        "Background tasks cancelled before they ended: held by the request, "
        "next in the request (2); the request that ran them was cancelled"
    )
