"""One behaviour suite, run against every executor on both event loops."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import anyio
import pytest

from offload import (
    BackgroundTasks,
    Executor,
    PoolExecutor,
    Runtime,
    TaskTimeout,
    register_executor,
)
from shared_tasks import TaskFailed, fail, fail_async, sleep, sleep_async, write, write_async

pytestmark = pytest.mark.anyio

EXECUTORS = ["inline", "thread", "process", "pool"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "pool":  # PoolExecutor, over the most common pool a user would give it
        forkserver = multiprocessing.get_context("forkserver")
        factory = partial(ProcessPoolExecutor, 2, mp_context=forkserver)
        register_executor(name, lambda config: PoolExecutor(factory))
    return name


@pytest.mark.parametrize("func", [write, write_async], ids=["sync", "async"])
async def test_args_and_kwargs_reach_the_function(
    executor: str, func: object, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    tasks = BackgroundTasks(executor=executor)
    tasks.add_task(func, str(out), 1, "two", three=3)  # type: ignore[arg-type]
    await tasks()
    assert out.read_text() == "(1, 'two') [('three', 3)]"
    assert tasks.reports[0].status == "succeeded"
    assert tasks.reports[0].executor == executor


@pytest.mark.parametrize("func", [fail, fail_async], ids=["sync", "async"])
async def test_an_exception_keeps_its_type_and_message(executor: str, func: object) -> None:
    tasks = BackgroundTasks(executor=executor)
    tasks.add_task(func, "broken")  # type: ignore[arg-type]
    with pytest.raises(TaskFailed, match="^broken$"):
        await tasks()
    assert tasks.reports[0].status == "failed"


async def test_tasks_keep_their_order(executor: str, tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.txt" for i in range(4)]
    tasks = BackgroundTasks(executor=executor)
    for i, path in enumerate(paths):
        tasks.add_task(write if i % 2 else write_async, str(path), i)
    await tasks()
    mtimes = [path.stat().st_mtime_ns for path in paths]
    assert mtimes == sorted(mtimes)


async def test_a_timeout_reports_timed_out(executor: str) -> None:
    if executor == "inline":
        func: object = sleep_async  # a sync call on the loop cannot be interrupted
    else:
        func = sleep
    tasks = BackgroundTasks(executor=executor, on_error="continue")
    tasks.add_task(func, 2).set(timeout=0.1)  # type: ignore[arg-type]
    with anyio.fail_after(10):
        await tasks()
    assert tasks.reports[0].status == "timed_out"
    assert isinstance(tasks.reports[0].error, TaskTimeout)


async def test_the_executor_starts_closes_and_starts_again(executor: str, tmp_path: Path) -> None:
    async with Runtime() as runtime:
        instance = runtime.executor(executor)
    assert isinstance(instance, Executor)
    async with instance:
        tasks = BackgroundTasks(executor=instance)
        tasks.add_task(write, str(tmp_path / "again.txt"))
        await tasks()
    assert (tmp_path / "again.txt").exists()
