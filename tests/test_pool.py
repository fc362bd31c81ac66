"""PoolExecutor: any concurrent.futures.Executor, on both event loops."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any

import anyio
import pytest

import process_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    NotPicklable,
    OffloadError,
    PoolExecutor,
    register_executor,
)
from offload.executors._pickling import RemoteTraceback

pytestmark = pytest.mark.anyio

process_pool = partial(ProcessPoolExecutor, 1, mp_context=multiprocessing.get_context("forkserver"))


async def call(executor: PoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
    return await executor.run(BackgroundTask(func, *args))


async def test_a_thread_pool_runs_sync_and_coroutine_functions() -> None:
    with ThreadPoolExecutor(2) as pool:
        async with PoolExecutor(pool) as executor:
            assert await call(executor, process_tasks.add, 2, 3) == 5
            assert await call(executor, process_tasks.add_async, 2, 3) == (
                5,
                "_UnixSelectorEventLoop",
            )
            with pytest.raises(ValueError, match="^broken$"):
                await call(executor, process_tasks.fail, "broken")
        # A pool given as an instance stays the caller's: closing the executor keeps it open.
        assert pool.submit(process_tasks.add, 1, 1).result() == 2


async def test_a_timeout_cancels_a_queued_task_and_only_stops_waiting_for_a_running_one() -> None:
    release = threading.Event()
    ran: list[str] = []

    def block(name: str) -> None:
        ran.append(name)
        release.wait(5)
        ran.append(f"{name} done")

    with ThreadPoolExecutor(1) as pool:
        executor = PoolExecutor(pool)
        async with anyio.create_task_group() as group:
            with anyio.move_on_after(0.2) as running:
                group.start_soon(call, executor, block, "running")
                await anyio.sleep(0.1)
                await call(executor, block, "queued")
            release.set()
    assert running.cancelled_caught
    assert ran == ["running", "running done"]  # the queued task never ran


async def test_a_process_pool_pickles_the_call_when_the_task_is_bound() -> None:
    executor = PoolExecutor(process_pool)
    tasks = BackgroundTasks(executor=executor)
    with pytest.raises(NotPicklable, match="define it at module level"):
        tasks.add_task(lambda: None)

    before = process_tasks.pickled
    task = tasks.add_task(process_tasks.unwrap, process_tasks.CountingArg(7))
    payload = task.payload
    assert isinstance(payload, bytes)
    async with executor:
        assert await executor.run(task) == 7
    assert task.payload is payload
    assert process_tasks.pickled == before + 1


async def test_a_process_pool_sends_back_errors_that_cannot_be_unpickled() -> None:
    async with PoolExecutor(process_pool) as executor:
        with pytest.raises(ValueError, match="^broken$") as caught:
            await call(executor, process_tasks.fail, "broken")
        assert isinstance(caught.value.__cause__, RemoteTraceback)
        with pytest.raises(OffloadError, match="TwoArgError"):
            await call(executor, process_tasks.fail_two_arg_error)
        assert await call(executor, process_tasks.add, 1, 2) == 3


async def test_a_broken_pool_is_replaced_from_the_factory() -> None:
    async with PoolExecutor(process_pool) as executor:
        worker = await call(executor, process_tasks.pid)
        with pytest.raises(BrokenExecutor):
            await call(executor, process_tasks.crash, "exit")
        assert await call(executor, process_tasks.pid) not in (worker, os.getpid())


async def test_a_broken_pool_given_as_an_instance_says_a_factory_is_needed() -> None:
    pool = process_pool()
    try:
        executor = PoolExecutor(pool)
        with pytest.raises(BrokenExecutor) as caught:
            await call(executor, process_tasks.crash, "exit")
        assert "give it a factory instead" in "".join(caught.value.__notes__)
        with pytest.raises(BrokenExecutor):
            await call(executor, process_tasks.add, 1, 2)
    finally:
        pool.shutdown()


async def test_closing_shuts_down_a_pool_from_the_factory_and_start_makes_a_new_one() -> None:
    pools: list[ThreadPoolExecutor] = []

    def factory() -> ThreadPoolExecutor:
        pools.append(ThreadPoolExecutor(1))
        return pools[-1]

    executor = PoolExecutor(factory)
    for _ in range(2):
        async with executor:
            assert await call(executor, process_tasks.add, 1, 2) == 3
    assert len(pools) == 2
    for pool in pools:
        with pytest.raises(RuntimeError, match="shutdown"):
            pool.submit(process_tasks.add, 1, 2)


def test_bad_arguments_get_a_clear_error() -> None:
    with pytest.raises(TypeError, match="concurrent.futures.Executor or a zero-argument"):
        PoolExecutor(42)  # type: ignore[arg-type]
    register_executor("mypool", PoolExecutor)
    with pytest.raises(TypeError, match="register a factory instead"):
        BackgroundTasks(executor="mypool").add_task(process_tasks.add, 1, 2)


async def test_a_factory_that_makes_no_pool_is_named_when_it_is_called() -> None:
    executor = PoolExecutor(lambda: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="returned 42, not a concurrent.futures.Executor"):
        await executor.start()


async def test_a_registered_pool_runs_a_task_list() -> None:
    register_executor("mypool", lambda config: PoolExecutor(process_pool))
    tasks = BackgroundTasks(executor="mypool")
    tasks.add_task(process_tasks.add, 1, 2)
    await tasks()
    assert tasks.reports[0].status == "succeeded"
    assert tasks.reports[0].executor == "mypool"


class LegacyPool(ThreadPoolExecutor):
    """A pool whose shutdown predates ``cancel_futures``, as loky's and Dask's do."""

    def shutdown(self, wait: bool = True) -> None:  # type: ignore[override]
        super().shutdown(wait=wait)


async def test_a_pool_without_cancel_futures_still_shuts_down() -> None:
    pools: list[LegacyPool] = []

    def make() -> LegacyPool:
        pools.append(LegacyPool(1))
        return pools[-1]

    async with PoolExecutor(make) as executor:
        assert await call(executor, process_tasks.add, 1, 2) == 3
    assert pools[0]._shutdown


def test_binding_a_task_does_not_make_the_pool() -> None:
    made: list[ThreadPoolExecutor] = []

    def factory() -> ThreadPoolExecutor:
        made.append(ThreadPoolExecutor(1))
        return made[-1]

    executor = PoolExecutor(factory)
    BackgroundTasks(executor=executor).add_task(process_tasks.add, 1, 2)
    assert made == []  # made by start(), and so closed by aclose(), not by add_task
