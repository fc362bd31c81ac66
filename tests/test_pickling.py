"""NotPicklable names the part of a call that does not pickle, never the values it holds."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import pytest

from offload import BackgroundTask, BackgroundTasks, NotPicklable

SECRET = "hunter2"


class Credentials:
    """An argument whose repr shows a secret, as a dataclass's would."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Credentials(password={self.password!r})"


class Mailer(Credentials):
    """A callable object holding a secret and a lock."""

    def __call__(self) -> None:
        pass


def send(*args: object, **kwargs: object) -> None:
    pass


def messages(error: BaseException) -> list[str]:
    """Return the message of ``error`` and of every exception chained to it."""
    found: list[str] = []
    current: BaseException | None = error
    while current is not None:
        found.append(str(current))
        current = current.__cause__ or current.__context__
    return found


def not_picklable(task: BackgroundTask) -> NotPicklable:
    """Bind ``task`` to the process executor, which pickles its call, and return the error."""
    with pytest.raises(NotPicklable) as caught:
        task.set(executor="process")
    return caught.value


def test_an_argument_is_named_by_position_and_type_not_by_its_value() -> None:
    error = not_picklable(BackgroundTask(send, {"password": SECRET, "lock": threading.Lock()}))
    assert str(error) == (
        "process task 'send' cannot be pickled: argument 0 (a dict) does not pickle "
        "(TypeError: cannot pickle '_thread.lock' object); pass picklable arguments, such as "
        "the plain data a worker can rebuild the object from"
    )
    assert all(SECRET not in message for message in messages(error))


def test_a_keyword_argument_is_named_by_keyword_and_type_not_by_its_value() -> None:
    settings = {"password": SECRET, "lock": threading.Lock()}
    error = not_picklable(BackgroundTask(send, settings=settings))
    assert "keyword argument 'settings' (a dict) does not pickle (TypeError: " in str(error)
    assert all(SECRET not in message for message in messages(error))


def test_an_object_whose_repr_shows_a_secret_is_named_by_its_class() -> None:
    error = not_picklable(BackgroundTask(send, 1, Credentials(SECRET)))
    assert f"argument 1 (a {__name__}.Credentials) does not pickle" in str(error)
    assert all(SECRET not in message for message in messages(error))


def test_the_arguments_a_partial_binds_are_named_not_shown() -> None:
    func = partial(send, SECRET, threading.Lock(), token=SECRET)
    error = not_picklable(BackgroundTask(func))
    assert "partial argument 1 (a _thread.lock) does not pickle" in str(error)
    assert all(SECRET not in message for message in messages(error))

    func = partial(send, token=SECRET, lock=threading.Lock())
    error = not_picklable(BackgroundTask(func))
    assert "partial keyword argument 'lock' (a _thread.lock) does not pickle" in str(error)
    assert all(SECRET not in message for message in messages(error))


def test_a_function_is_named_by_its_qualified_name() -> None:
    error = not_picklable(BackgroundTask(lambda: None))
    name = f"{__name__}.test_a_function_is_named_by_its_qualified_name.<locals>.<lambda>"
    assert f"its function {name} does not pickle (" in str(error)
    assert "define it at module level" in str(error)


def test_a_callable_object_is_named_by_its_class_not_by_its_repr() -> None:
    task = BackgroundTask(Mailer(SECRET))
    with pytest.raises(NotPicklable) as caught:
        task.set(executor="process", name="mailer")
    assert f"its callable (a {__name__}.Mailer) does not pickle" in str(caught.value)
    assert all(SECRET not in message for message in messages(caught.value))


def test_a_call_that_pickles_only_in_parts_shows_the_picklers_message() -> None:
    class Bound(partial[None]):
        """A partial subclass local to a function: its parts pickle, it does not."""

    error = not_picklable(BackgroundTask(Bound(send, 1)))
    assert str(error).startswith("process task 'send' cannot be pickled (")
    assert "Bound" in str(error)  # the pickler's message names the local class
    assert str(error).endswith("; pass a module-level function and picklable arguments")


def test_a_task_list_reports_the_argument_without_its_value() -> None:
    tasks = BackgroundTasks(executor="process")
    with pytest.raises(NotPicklable, match=r"argument 0 \(a dict\)") as caught:
        tasks.add_task(send, {"password": SECRET, "lock": threading.Lock()})
    assert all(SECRET not in message for message in messages(caught.value))
    assert tasks.tasks == []


def test_dask_names_the_argument_without_its_value() -> None:
    dask: Any = pytest.importorskip("offload.executors.dask")
    executor = dask.DaskExecutor("tcp://127.0.0.1:8786")  # prepare() pickles; no connection
    task = BackgroundTask(send, {"password": SECRET, "lock": threading.Lock()})
    with pytest.raises(NotPicklable) as caught:
        task.set(executor=executor)
    assert str(caught.value).startswith(
        "dask task 'send' cannot be pickled: argument 0 (a dict) does not pickle "
        "(TypeError: cannot pickle '_thread.lock' object); "
    )
    assert all(SECRET not in message for message in messages(caught.value))
