"""BackgroundTask and BackgroundTasks: the task model, options, and bad input."""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import pytest

from offload import (
    BackgroundTask,
    BackgroundTasks,
    ConfigError,
    ExecutorNotFound,
    NotPicklable,
    task_options,
)
from offload._options import TaskOptions

pytestmark = pytest.mark.anyio


def send(to: str, *, subject: str = "") -> None:
    pass


async def send_async(to: str) -> None:
    pass


def store(value: object) -> None:
    pass


class AsyncCallable:
    async def __call__(self) -> None:
        pass


def test_task_keeps_the_call_like_starlette() -> None:
    task = BackgroundTask(send, "a@b.c", subject="hi")
    assert task.func is send
    assert task.args == ("a@b.c",)
    assert task.kwargs == {"subject": "hi"}
    assert task.is_async is False
    assert task.name == "send"


@pytest.mark.parametrize(
    "func", [send_async, functools.partial(send_async, "x"), AsyncCallable()], ids=repr
)
def test_is_async_sees_through_partials_and_async_call(func: Any) -> None:
    assert BackgroundTask(func).is_async is True


def test_set_is_chainable_and_in_place() -> None:
    task = BackgroundTask(send, "a@b.c")
    assert task.set(timeout=3, retries=2, name="mail") is task
    assert (task.timeout, task.retries, task.name) == (3, 2, "mail")
    task.set(executor="inline")
    assert (task.explicit_executor, task.timeout, task.name) == ("inline", 3, "mail")


def test_function_defaults_apply_until_the_task_overrides_them() -> None:
    @task_options(executor="thread", timeout=5, retries=1, name="report")
    def render(report_id: int) -> None:
        pass

    task = BackgroundTask(render, 42)
    assert (task.explicit_executor, task.timeout, task.retries, task.name) == (
        "thread",
        5,
        1,
        "report",
    )
    task.set(timeout=1, name="urgent report")
    assert (task.timeout, task.name) == (1, "urgent report")
    assert BackgroundTask(functools.partial(render, 1)).timeout == 5  # seen through partials


def test_task_options_returns_the_function_itself() -> None:
    def render() -> None:
        pass

    assert task_options(timeout=1)(render) is render


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be a finite number of seconds > 0, or None, got 0"),
        ({"timeout": -1}, "timeout must be a finite number of seconds > 0, or None, got -1"),
        ({"retries": -1}, "retries must be an int >= 0, or None, got -1"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        BackgroundTask(send, "x").set(**options)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        task_options(**options)


def test_add_task_returns_the_new_task_in_order() -> None:
    tasks = BackgroundTasks()
    first = tasks.add_task(send, "a")
    second = tasks.add_task(send_async, "b")
    assert tasks.tasks == [first, second]
    assert second.args == ("b",)


def test_a_coroutine_object_gets_a_teaching_error() -> None:
    tasks = BackgroundTasks()
    # filterwarnings=error also proves the coroutine is closed: no "never awaited" warning.
    with pytest.raises(TypeError) as caught:
        tasks.add_task(send_async("a@b.c"))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "add_task() got the coroutine object send_async(...), not a function" in message
    assert "add_task(send_async, ...) instead of add_task(send_async(...))" in message


def test_a_coroutine_object_is_refused_everywhere_a_task_is_made() -> None:
    with pytest.raises(TypeError, match=r"BackgroundTask\(\) got the coroutine object"):
        BackgroundTask(send_async("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a background task list got the coroutine object"):
        BackgroundTasks([send_async("x")])


@pytest.mark.parametrize("junk", [42, "send", None])
def test_a_non_callable_is_refused(junk: object) -> None:
    with pytest.raises(TypeError, match=f"needs a callable, got a {type(junk).__name__}$"):
        BackgroundTasks().add_task(junk)  # type: ignore[arg-type]


def test_bad_on_error_and_concurrency_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="on_error must be one of .*, got 'ignore'"):
        BackgroundTasks(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="concurrency must be one of .*, got 'parallel'"):
        BackgroundTasks(concurrency="parallel")  # type: ignore[arg-type]


class ForeignTask:
    """What Starlette's, FastAPI's or Lilya's task objects look like."""

    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs


class ForeignTasks:
    def __init__(self, tasks: list[ForeignTask]) -> None:
        self.tasks = tasks


def test_lists_take_foreign_tasks_their_lists_and_zero_argument_callables() -> None:
    own = BackgroundTask(send, "own")
    nested = BackgroundTasks([BackgroundTask(send, "nested")])
    tasks = BackgroundTasks(
        [
            own,
            ForeignTask(send, "foreign", subject="s"),
            ForeignTasks([ForeignTask(send, "f1"), ForeignTask(send, "f2")]),
            nested,
            functools.partial(send, "partial"),
        ]
    )
    assert tasks.tasks[0] is own
    assert [(t.args, t.kwargs) for t in tasks.tasks[1:]] == [
        (("foreign",), {"subject": "s"}),
        (("f1",), {}),
        (("f2",), {}),
        (("nested",), {}),
        ((), {}),
    ]


def test_a_callable_that_needs_arguments_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"send needs arguments.*BackgroundTask\(send, \.\.\.\)"):
        BackgroundTasks([send])


async def test_starlette_tasks_run_through_offload() -> None:
    from starlette.background import BackgroundTask as StarletteTask
    from starlette.background import BackgroundTasks as StarletteTasks

    ran: list[str] = []
    tasks = BackgroundTasks(
        [StarletteTask(ran.append, "one"), StarletteTasks([StarletteTask(ran.append, "two")])]
    )
    await tasks()
    assert ran == ["one", "two"]
    assert [r.executor for r in tasks.reports] == ["thread", "thread"]


def test_repr_names_the_tasks() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(send, "x").set(name="mail")
    assert repr(tasks) == "<BackgroundTasks ['mail']>"
    assert repr(tasks.tasks[0]) == "<BackgroundTask 'mail'>"


def test_a_failed_set_changes_nothing() -> None:
    task = BackgroundTask(store, threading.Lock())
    with pytest.raises(NotPicklable, match="process task 'mailer' cannot be pickled"):
        task.set(executor="process", name="mailer")  # the error names the task as set
    with pytest.raises(ExecutorNotFound):
        task.set(executor="nope", timeout=3)
    assert task.options == TaskOptions()
    assert (task.explicit_executor, task.timeout, task.name) == (None, None, "store")


def test_setting_a_name_renames_a_task_already_named() -> None:
    task = BackgroundTask(send, "x")
    assert task.name == "send"
    task.set(name="mail")
    assert task.name == "mail"
    assert repr(task) == "<BackgroundTask 'mail'>"


def test_every_task_has_a_unique_id_of_32_hex_characters() -> None:
    tasks = [BackgroundTask(send, "x") for _ in range(1000)]
    ids = {task.id for task in tasks}
    assert len(ids) == 1000
    assert all(len(task_id) == 32 and int(task_id, 16) >= 0 for task_id in ids)


async def test_a_report_carries_its_tasks_id() -> None:
    tasks = BackgroundTasks()
    first, second = tasks.add_task(send, "a"), tasks.add_task(send, "b")
    await tasks()
    assert [report.id for report in tasks.reports] == [first.id, second.id]


def test_a_forked_process_makes_ids_of_its_own() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave at once
        os.write(writer, BackgroundTask(send, "x").id.encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader) as pipe:
        child_id = pipe.read()
    parent_id = BackgroundTask(send, "x").id
    assert len(child_id) == 32
    assert child_id[:16] != parent_id[:16]


def test_a_list_given_a_group_list_runs_its_tasks_as_a_group() -> None:
    inner = BackgroundTasks([functools.partial(send, "a")], concurrency="group")
    assert BackgroundTasks([inner]).concurrency == "group"
    assert BackgroundTasks([inner], concurrency="sequential").concurrency == "sequential"
    assert BackgroundTasks([BackgroundTasks([functools.partial(send, "b")])]).concurrency is None
