"""BackgroundsMixin on a framework-free response class: what it accepts, merging, overrides."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from offload import BackgroundTask, BackgroundTasks, ExecutorNotFound, TaskReport
from offload.responses import BackgroundsMixin
from recording import RecordingExecutor, register


class PlainResponse:
    """Stands in for a framework's response: it keeps ``background`` and awaits it."""

    def __init__(self, content: object = None, background: Any = None) -> None:
        self.content = content
        self.background = background

    async def send(self) -> None:
        if self.background is not None:
            await self.background()


class Response(BackgroundsMixin, PlainResponse):
    pass


class StarletteStyleTask:
    """What Starlette's, FastAPI's and Lilya's task objects look like to offload."""

    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs


class SyncAdapter:
    """Lilya's way to make a sync function awaitable: a plain ``__call__`` returning one."""

    def __init__(self, func: Any) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.func(*args)

        return call()


class LilyaStyleTask:
    """Lilya's task: ``func`` is awaitable-returning, and only the task itself awaits it."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = SyncAdapter(func), args
        self.kwargs: dict[str, Any] = {}

    async def __call__(self) -> None:
        await self.func(*self.args)


class LitestarStyleTask:
    """Litestar's task: no ``func`` (it is ``fn``), an async ``__call__``."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    async def __call__(self) -> None:
        self.fn(*self.args)


class StarletteStyleTasks:
    def __init__(self, tasks: list[StarletteStyleTask]) -> None:
        self.tasks = tasks


def noop() -> None:
    pass


def other() -> None:
    pass


@pytest.fixture
def ran() -> list[str]:
    return []


def names(response: Response) -> list[str]:
    assert isinstance(response.background, BackgroundTasks)
    return [task.name for task in response.background.tasks]


def test_other_arguments_reach_the_response_class() -> None:
    response = Response("body", backgrounds=[noop])
    assert response.content == "body"
    assert isinstance(response.background, BackgroundTasks)


@pytest.mark.anyio
async def test_backgrounds_accepts_every_kind_of_task(ran: list[str]) -> None:
    offload_task = BackgroundTask(ran.append, "offload task")
    starlette_task = StarletteStyleTask(ran.append, "starlette task")
    starlette_tasks = StarletteStyleTasks([StarletteStyleTask(ran.append, "starlette list")])
    offload_tasks = BackgroundTasks([BackgroundTask(ran.append, "offload list")])

    def plain() -> None:
        ran.append("plain callable")

    response = Response(
        backgrounds=[offload_task, starlette_task, starlette_tasks, offload_tasks, plain]
    )
    await response.send()
    assert ran == [
        "offload task",
        "starlette task",
        "starlette list",
        "offload list",
        "plain callable",
    ]


@pytest.mark.anyio
async def test_tasks_of_frameworks_that_wrap_sync_functions_still_run(ran: list[str]) -> None:
    response = Response(
        backgrounds=[LilyaStyleTask(ran.append, "lilya"), LitestarStyleTask(ran.append, "litestar")]
    )
    await response.send()
    assert ran == ["lilya", "litestar"]


@pytest.mark.anyio
async def test_background_given_as_well_runs_first(ran: list[str]) -> None:
    response = Response(
        background=StarletteStyleTask(ran.append, "background"),
        backgrounds=[BackgroundTask(ran.append, "backgrounds")],
    )
    await response.send()
    assert ran == ["background", "backgrounds"]


@pytest.mark.anyio
async def test_background_given_positionally_is_merged_too(ran: list[str]) -> None:
    response = Response(
        "body",
        StarletteStyleTask(ran.append, "background"),
        backgrounds=[BackgroundTask(ran.append, "backgrounds")],
    )
    await response.send()
    assert ran == ["background", "backgrounds"]


def test_background_alone_becomes_an_offload_list() -> None:
    response = Response(background=StarletteStyleTasks([StarletteStyleTask(noop, "x")]))
    assert names(response) == ["noop"]


def test_an_offload_list_alone_is_kept_as_it_is() -> None:
    tasks = BackgroundTasks([noop], executor="thread", on_error="continue")
    assert Response(background=tasks).background is tasks


def test_without_any_task_background_stays_none() -> None:
    # So FastAPI can still attach the tasks injected into the endpoint.
    assert Response().background is None
    assert Response(backgrounds=[], executor="thread").background is None


def test_executor_name_applies_to_tasks_that_choose_none() -> None:
    recorders = register("mine", "theirs")
    task = BackgroundTask(noop).set(executor="theirs", name="chosen")
    response = Response(backgrounds=[BackgroundTask(noop), task], executor="mine")
    assert recorders["mine"].prepared == ["noop"]  # checked while the endpoint runs
    assert response.background.tasks[0].runs_on == "mine"


@pytest.mark.anyio
async def test_executor_instance_and_chooser_are_accepted() -> None:
    by_instance, by_chooser = RecordingExecutor(), RecordingExecutor()
    await Response(backgrounds=[noop], executor=by_instance).send()
    await Response(
        backgrounds=[noop, other], executor=lambda t: by_chooser if t.name == "other" else None
    ).send()
    assert by_instance.ran == ["noop"]
    assert by_chooser.ran == ["other"]


def test_unknown_executor_name_fails_at_construction() -> None:
    with pytest.raises(ExecutorNotFound, match="unknown executor 'nope'"):
        Response(backgrounds=[noop], executor="nope")


@pytest.mark.anyio
async def test_on_error_overrides_the_config(ran: list[str]) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    response = Response(
        backgrounds=[fail, BackgroundTask(ran.append, "after")], on_error="continue"
    )
    await response.send()  # continue: nothing propagates
    assert ran == ["after"]
    reports: list[TaskReport] = response.background.reports
    assert [r.status for r in reports] == ["failed", "succeeded"]


def test_concurrency_overrides_the_config() -> None:
    assert Response(backgrounds=[noop], concurrency="group").background.concurrency == "group"


@pytest.mark.anyio
async def test_merging_keeps_the_executor_choice_of_an_offload_background() -> None:
    recorders = register("own", "response")
    own = BackgroundTasks([BackgroundTask(noop).set(name="own task")], executor="own")
    response = Response(
        background=own, backgrounds=[BackgroundTask(noop).set(name="new task")], executor="response"
    )
    await response.send()
    assert recorders["own"].ran == ["own task"]
    assert recorders["response"].ran == ["new task"]


def test_merging_inherits_policy_of_an_offload_background_unless_overridden() -> None:
    own = BackgroundTasks([noop], on_error="collect", concurrency="group")
    merged = Response(background=own, backgrounds=[other]).background
    assert (merged.on_error, merged.concurrency) == ("collect", "group")
    overridden = Response(background=own, backgrounds=[other], on_error="stop").background
    assert (overridden.on_error, overridden.concurrency) == ("stop", "group")


def test_backgrounds_must_be_a_sequence() -> None:
    with pytest.raises(TypeError, match=r"wrap a single task or task list in a list"):
        Response(backgrounds=BackgroundTasks([noop]))  # type: ignore[arg-type]


def test_a_coroutine_object_gets_the_teaching_error() -> None:
    async def send_mail() -> None:
        pass

    with pytest.raises(TypeError, match=r"not a function"):
        Response(backgrounds=[send_mail()])


def test_a_function_that_needs_arguments_is_refused() -> None:
    def send_mail(to: str) -> None:
        pass

    with pytest.raises(TypeError, match=r"wrap it with its arguments"):
        Response(backgrounds=[send_mail])


def test_importing_offload_imports_no_web_framework() -> None:
    code = (
        "import sys, offload, offload.responses\n"
        "loaded = sorted({'starlette', 'fastapi'} & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
