"""offload in Ellar apps, served by uvicorn on 127.0.0.1: injection, middleware, responses.

The app is tests/frameworks/ellar_testapp.py; its tasks leave files (tests/frameworks/
ellar_tasks.py) that the tests wait for, holding the pid of the process that ran them.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import offload

with warnings.catch_warnings():
    # Ellar 0.9.5 warns as it is imported, of its own code: pydantic v1-style config
    # classes, and Starlette's deprecated WSGI middleware, which it imports.
    warnings.filterwarnings("ignore", "BaseConfig is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "Support for class-based `config`", DeprecationWarning)
    warnings.filterwarnings("ignore", "starlette.middleware.wsgi is deprecated", DeprecationWarning)
    import ellar_testapp

    import offload.ellar

# tests/ is on sys.path under pytest, not under mypy in the nox session.
from servers import serve  # type: ignore[import-not-found, unused-ignore]
from test_docs import python_samples, run_sample  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).parent.parent.parent
#: The marks of the three tasks ``add_three`` adds.
THREE = ("sync", "async", "process")


def wait_for(path: Path, timeout: float = 15) -> str:
    """Return what the task that leaves ``path`` wrote there, once it has (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        time.sleep(0.01)
    raise AssertionError(f"{path.name!r} was never written")


def marks_of(folder: Path, *names: str) -> dict[str, int]:
    """Wait for each named mark in ``folder``; return the pid each holds."""
    return {name: int(wait_for(folder / name)) for name in names}


def reports(count: int, timeout: float = 10) -> list[offload.TaskReport]:
    """Return the app's task reports once there are ``count`` (each comes as its task ends)."""
    deadline = time.monotonic() + timeout
    while len(ellar_testapp.REPORTS) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return ellar_testapp.REPORTS


@pytest.fixture
def url() -> Iterator[str]:
    """Serve a new app (its lifespan included) on 127.0.0.1; stop it after the test."""
    ellar_testapp.REPORTS.clear()
    with serve(ellar_testapp.create_app()) as base:
        yield base


def post(url: str, path: str, marks: Path, **params: str) -> dict[str, object]:
    response = httpx.post(url + path, params={"marks": str(marks), **params}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def check_three_ran(marks: Path) -> None:
    pids = marks_of(marks, *THREE)
    assert pids["sync"] == pids["async"] == os.getpid()  # the server's: it runs in a thread
    assert pids["process"] != os.getpid()


@pytest.mark.parametrize("path", ["/annotated", "/inject", "/string"])
def test_handlers_get_offload_tasks_by_annotation_inject_or_string(
    url: str, path: str, tmp_path: Path
) -> None:
    body = post(url, path, tmp_path)
    assert body["type"] == "offload._task"
    check_three_ran(tmp_path)


def test_the_injected_tasks_run_on_offloads_executors(url: str, tmp_path: Path) -> None:
    post(url, "/annotated", tmp_path)
    check_three_ran(tmp_path)
    ran = sorted((report.name, report.executor, report.status) for report in reports(3))
    assert ran == [
        ("mark", "process", "succeeded"),
        ("mark", "thread", "succeeded"),
        ("mark_async", "inline", "succeeded"),
    ]


def test_the_tasks_run_after_the_response_is_sent(url: str, tmp_path: Path) -> None:
    # The task waits for a file that the test makes only once it has the response.
    post(url, "/after-response", tmp_path)
    assert not (tmp_path / "done").exists()
    (tmp_path / "go").touch()
    wait_for(tmp_path / "done")


@pytest.mark.parametrize("put", ["list", "task", "helper"])
def test_the_handler_gets_the_tasks_a_middleware_put_on_the_request(
    url: str, put: str, tmp_path: Path
) -> None:
    body = post(url, "/annotated", tmp_path, put=put)
    assert body["found"] == ["mark"]  # the middleware's task: its list, not a new one
    marks_of(tmp_path, "middleware")
    check_three_ran(tmp_path)


@pytest.mark.parametrize("path", ["/ellar", "/ellar-string"])
def test_a_handler_asking_for_starlettes_tasks_gets_ellars_own(
    url: str, path: str, tmp_path: Path
) -> None:
    body = post(url, path, tmp_path)
    assert body["type"] == "starlette.background"
    assert marks_of(tmp_path, "ellar") == {"ellar": os.getpid()}


@pytest.mark.parametrize("put", ["list", "task", "helper"])
def test_a_middlewares_offload_tasks_still_run_with_ellars_own(
    url: str, put: str, tmp_path: Path
) -> None:
    # Ellar's own injection would replace an offload list or task on the response.
    post(url, "/ellar", tmp_path, put=put)
    marks_of(tmp_path, "middleware", "ellar")


def test_a_handler_asking_for_both_lists_gets_one_offload_list(url: str, tmp_path: Path) -> None:
    body = post(url, "/both", tmp_path, put="list")
    assert body["shared"] is True
    marks_of(tmp_path, "middleware", "ellar", "offload")


@pytest.mark.parametrize("kind", ["ellar", "offload"])
def test_returned_responses_take_the_injected_list_as_background(
    url: str, kind: str, tmp_path: Path
) -> None:
    post(url, "/response-background", tmp_path, kind=kind)
    check_three_ran(tmp_path)


def test_starlette_tasks_in_backgrounds_run_as_their_functions(url: str, tmp_path: Path) -> None:
    # Ellar's task classes are Starlette's: offload unpacks them, so the chooser sees the
    # function, the process executor pickles it, and the reports bear its name.
    post(url, "/starlette-tasks", tmp_path)
    pids = marks_of(tmp_path, "process", "async")
    assert pids["process"] != os.getpid()
    assert pids["async"] == os.getpid()
    ran = sorted((report.name, report.executor) for report in reports(2))
    assert ran == [("mark", "process"), ("mark_async", "inline")]


def test_the_module_reexports_offloads_task_classes() -> None:
    assert offload.ellar.BackgroundTask is offload.BackgroundTask
    assert offload.ellar.BackgroundTasks is offload.BackgroundTasks
    assert sorted(offload.ellar.__all__) == offload.ellar.__all__


def test_without_ellar_the_import_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "offload.ellar")
    monkeypatch.setitem(sys.modules, "ellar.common", None)  # what a missing package gives
    with pytest.raises(ImportError, match=r"'ellar' extra: pip install \"offload\[ellar\]\""):
        importlib.import_module("offload.ellar")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_example_app_serves_its_three_tasks(tmp_path: Path) -> None:
    port = free_port()
    code = (
        "import sys, uvicorn; sys.path.insert(0, 'examples'); import ellar_app; "
        f"uvicorn.run(ellar_app.app, host='127.0.0.1', port={port}, log_level='warning')"
    )
    printed = tmp_path / "printed"
    with printed.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=output, stderr=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/reports/42", timeout=5)
                break
            except httpx.ConnectError:
                assert server.poll() is None, "the example's server exited"
                assert time.monotonic() < deadline, "the example's server did not start"
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.json() == {"report": 42, "status": "accepted"}
        deadline = time.monotonic() + 30
        while printed.read_text().count("\n") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert printed.read_text().splitlines() == [
        "report 42: audit logged",
        "report 42: notification sent",
        "report 42 rendered in a worker process",
    ]


def test_the_docs_page_samples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = python_samples(ROOT / "docs" / "frameworks" / "ellar.md")
    assert samples
    monkeypatch.syspath_prepend(str(tmp_path))  # a sample with a title is a module
    monkeypatch.chdir(tmp_path)
    # One module for the page's samples: Ellar's @Module looks for the file of its class.
    page = types.ModuleType("ellar_docs_sample")
    page.__file__ = str(tmp_path / "ellar_docs_sample.py")
    monkeypatch.setitem(sys.modules, page.__name__, page)
    for sample in samples:
        if sample.title:
            (tmp_path / sample.title).write_text(sample.code)
        else:
            run_sample(sample, page.__dict__)
