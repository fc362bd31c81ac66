"""Choosing the executor of one task: the five steps, most specific first."""

from __future__ import annotations

import traceback

import pytest

from offload import (
    BackgroundTask,
    BackgroundTasks,
    ExecutorNotFound,
    OffloadConfig,
    Runtime,
    task_options,
)
from recording import RecordingExecutor, register

pytestmark = pytest.mark.anyio


def plain() -> None:
    pass


@task_options(executor="by_function")
def decorated() -> None:
    pass


async def coroutine_function() -> None:
    pass


@pytest.fixture
def recorders() -> dict[str, RecordingExecutor]:
    return register("by_task", "by_function", "by_list", "by_config")


async def run_with_config(tasks: BackgroundTasks) -> None:
    async with Runtime(OffloadConfig(executor="by_config")):
        await tasks()


async def test_the_task_own_executor_wins(recorders: dict[str, RecordingExecutor]) -> None:
    tasks = BackgroundTasks(executor="by_list")
    tasks.add_task(decorated).set(executor="by_task")
    await run_with_config(tasks)
    assert recorders["by_task"].ran == ["decorated"]
    assert tasks.reports[0].executor == "by_task"


async def test_the_function_default_beats_the_list(recorders: dict[str, RecordingExecutor]) -> None:
    tasks = BackgroundTasks([decorated], executor="by_list")
    await run_with_config(tasks)
    assert recorders["by_function"].ran == ["decorated"]


async def test_the_list_beats_the_config(recorders: dict[str, RecordingExecutor]) -> None:
    tasks = BackgroundTasks([plain], executor="by_list")
    await run_with_config(tasks)
    assert recorders["by_list"].ran == ["plain"]


async def test_the_config_beats_auto(recorders: dict[str, RecordingExecutor]) -> None:
    tasks = BackgroundTasks([plain, coroutine_function])
    await run_with_config(tasks)
    assert recorders["by_config"].ran == ["plain", "coroutine_function"]


async def test_auto_runs_coroutine_functions_inline_and_the_rest_on_threads() -> None:
    tasks = BackgroundTasks([plain, coroutine_function])
    await tasks()
    assert [r.executor for r in tasks.reports] == ["thread", "inline"]


async def test_an_executor_instance_can_be_given_anywhere() -> None:
    mine = RecordingExecutor()
    tasks = BackgroundTasks(executor=mine)
    tasks.add_task(plain)
    tasks.add_task(coroutine_function)
    await tasks()
    assert mine.ran == ["plain", "coroutine_function"]
    assert tasks.reports[0].executor == "RecordingExecutor"


async def test_a_chooser_picks_per_task(recorders: dict[str, RecordingExecutor]) -> None:
    asked: list[str] = []

    def by_name(task: BackgroundTask) -> str | None:
        asked.append(task.name)
        return "by_list" if task.name == "plain" else None

    tasks = BackgroundTasks([plain, coroutine_function], executor=by_name)
    await run_with_config(tasks)
    assert recorders["by_list"].ran == ["plain"]
    assert recorders["by_config"].ran == ["coroutine_function"]  # None leaves it to the config
    assert asked == ["plain", "coroutine_function"]  # once per task, when it joined the list


async def test_a_chooser_sees_tasks_appended_directly() -> None:
    mine = RecordingExecutor()
    tasks = BackgroundTasks(executor=lambda task: mine)
    tasks.tasks.append(BackgroundTask(plain))
    await tasks()
    assert mine.ran == ["plain"]


def test_a_chooser_returning_junk_is_an_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"returned 42 for task 'plain'; a chooser must return"):
        BackgroundTasks([plain], executor=lambda task: 42)  # type: ignore[arg-type]


def test_the_executor_chosen_at_add_time_prepares_the_task(
    recorders: dict[str, RecordingExecutor],
) -> None:
    tasks = BackgroundTasks(executor="by_list")
    tasks.add_task(plain)
    BackgroundTask(decorated)
    BackgroundTask(plain).set(executor="by_task")
    assert recorders["by_list"].prepared == ["plain"]
    assert recorders["by_function"].prepared == ["decorated"]
    assert recorders["by_task"].prepared == ["plain"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: BackgroundTask(plain).set(executor="proces"),
        lambda: BackgroundTasks(executor="proces"),
        lambda: BackgroundTask(task_options(executor="proces")(lambda: None)),
    ],
    ids=["task.set", "BackgroundTasks", "task_options"],
)
def test_unknown_executor_names_fail_early_listing_the_known_ones(make: object) -> None:
    with pytest.raises(ExecutorNotFound, match=r"unknown executor 'proces'; known executors are "):
        make()  # type: ignore[operator]


def test_unknown_executor_in_the_config_fails_when_the_runtime_starts() -> None:
    import anyio

    async def enter() -> None:
        async with Runtime(OffloadConfig(executor="nowhere")):
            pass

    with pytest.raises(ExecutorNotFound, match="'auto', 'dask', 'inline'"):
        anyio.run(enter)


def test_executor_not_found_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        BackgroundTasks(executor="nowhere")


def test_executor_must_be_a_name_an_executor_or_a_chooser() -> None:
    with pytest.raises(TypeError, match="executor must be a name, an offload.Executor or a"):
        BackgroundTasks(executor=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="executor must be a registered name or an offload"):
        BackgroundTask(plain).set(executor=3)  # type: ignore[arg-type]


async def test_the_config_executor_prepares_tasks_as_they_join(
    recorders: dict[str, RecordingExecutor],
) -> None:
    async with Runtime(OffloadConfig(executor="by_config")):
        tasks = BackgroundTasks()
        tasks.add_task(plain)
    assert recorders["by_config"].prepared == ["plain"]


async def test_a_chooser_is_not_asked_about_tasks_with_an_executor_of_their_own(
    recorders: dict[str, RecordingExecutor],
) -> None:
    asked: list[str] = []

    def chooser(task: BackgroundTask) -> str:
        asked.append(task.name)
        return "thread"

    tasks = BackgroundTasks(executor=chooser)
    tasks.add_task(plain)
    tasks.tasks.append(BackgroundTask(coroutine_function).set(executor="inline"))
    tasks.tasks.append(BackgroundTask(decorated))
    await tasks()
    await tasks()
    assert asked == ["plain"]  # once, when it joined the list
    assert [r.executor for r in tasks.reports] == ["thread", "inline", "by_function"]


def test_task_options_refuses_a_near_miss_of_a_known_executor_at_once() -> None:
    with pytest.raises(ExecutorNotFound, match=r"did you mean 'process'\?$"):
        task_options(executor="Process")


def test_task_options_lets_a_name_registered_later_pass_until_a_task_is_made() -> None:
    @task_options(executor="registered_later")
    def later() -> None:
        pass

    with pytest.raises(ExecutorNotFound, match="unknown executor 'registered_later'"):
        BackgroundTask(later)
    recorders = register("registered_later")
    BackgroundTask(later)
    assert recorders["registered_later"].prepared == [later.__qualname__]


def test_executor_not_found_suggests_a_near_miss_and_lists_the_known_names() -> None:
    with pytest.raises(ExecutorNotFound) as caught:
        BackgroundTask(plain).set(executor="theads")
    error = caught.value
    assert str(error) == (
        "unknown executor 'theads'; known executors are 'auto', 'dask', 'inline', 'process', "
        "'thread'; did you mean 'thread'?"
    )
    assert (error.name, error.suggestion) == ("theads", "thread")
    assert error.known == ("auto", "dask", "inline", "process", "thread")


def test_executor_not_found_without_a_near_miss_says_how_to_add_one() -> None:
    with pytest.raises(ExecutorNotFound) as caught:
        BackgroundTasks(executor="nowhere")
    assert str(caught.value).endswith("(add one with offload.register_executor)")
    assert caught.value.suggestion is None


def test_executor_not_found_does_not_chain_the_lookup_key_error() -> None:
    with pytest.raises(ExecutorNotFound) as caught:
        BackgroundTask(plain).set(executor="nowhere")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "KeyError" not in "".join(traceback.format_exception(caught.value))
