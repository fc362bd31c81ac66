"""The pytest plugin, tested as users meet it: real pytest runs of small test files."""

from __future__ import annotations

import pytest

APP = """
import offload
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

SENT = []

def send_mail(to, subject=""):
    SENT.append(to)

def broken_audit():
    raise RuntimeError("audit store down")

async def signup(request):
    tasks = offload.BackgroundTasks()
    tasks.add_task(send_mail, "a@b.c", subject="welcome")
    return JSONResponse({"ok": True}, background=tasks)

async def audit(request):
    return JSONResponse({"ok": True}, background=offload.BackgroundTask(broken_audit))

app = Starlette(routes=[Route("/signup", signup), Route("/audit", audit)])

fastapi_app = FastAPI()

@fastapi_app.get("/signup")
async def fastapi_signup():
    tasks = offload.BackgroundTasks()
    tasks.add_task(send_mail, "c@d.e")
    return JSONResponse({"ok": True}, background=tasks)
"""


@pytest.fixture
def app(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(myapp=APP)
    return pytester


def test_recorder_lists_tasks_without_running_them(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        from starlette.testclient import TestClient
        from myapp import SENT, app, send_mail

        def test_signup(offload_recorder):
            with TestClient(app) as client:
                assert client.get("/signup").status_code == 200
            (task,) = offload_recorder.tasks
            assert task.func is send_mail
            assert task.args == ("a@b.c",)
            assert task.kwargs == {"subject": "welcome"}
            assert task.executor == "thread"
            assert task.name == "send_mail"
            assert SENT == []
            reports = offload_recorder.run_all()
            assert [r.status for r in reports] == ["succeeded"]
            assert SENT == ["a@b.c"]
            assert offload_recorder.tasks == []
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_recorded_tasks_have_ids_and_the_runtime_keeps_their_statuses(
    app: pytest.Pytester,
) -> None:
    app.makepyfile(
        """
        from starlette.testclient import TestClient
        from myapp import app

        def test_signup(offload_runtime, offload_recorder):
            with TestClient(app) as client:
                assert client.get("/signup").status_code == 200
            (task,) = offload_recorder.tasks
            assert len(task.id) == 32
            (report,) = offload_recorder.run_all()
            assert report.id == task.id
            assert offload_runtime.status(task.id).state == "succeeded"
            assert [status.id for status in offload_runtime.statuses()] == [task.id]
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_recorder_works_with_asgi_transport_on_both_backends(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import httpx, pytest
        from myapp import SENT, app

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        async def test_signup(offload_recorder, anyio_backend):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/signup")
            assert [t.args for t in offload_recorder.tasks] == [("a@b.c",)]
            reports = await offload_recorder.arun_all()
            assert [r.executor for r in reports] == ["thread"]
            assert SENT[-1] == "a@b.c"
        """
    )
    app.runpytest().assert_outcomes(passed=2)


def test_recorder_works_with_fastapi_test_client(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        from fastapi.testclient import TestClient
        from myapp import fastapi_app

        def test_signup(offload_recorder):
            with TestClient(fastapi_app) as client:
                client.get("/signup")
            assert repr(offload_recorder.tasks) == "[<RecordedTask send_mail('c@d.e') on 'thread'>]"
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_an_unexamined_task_failure_fails_the_test_with_its_traceback(
    app: pytest.Pytester,
) -> None:
    app.makepyfile(
        """
        import pytest
        from starlette.testclient import TestClient
        from myapp import app

        @pytest.mark.offload(on_error="continue")
        def test_audit(offload_runtime):
            with TestClient(app) as client:
                assert client.get("/audit").status_code == 200
        """
    )
    result = app.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 background task(s) failed and the test did not look at offload_runtime.failures*",
            "*background task 'broken_audit' failed on thread:*",
            '*raise RuntimeError("audit store down")*',
            "RuntimeError: audit store down",
        ]
    )


def test_a_failure_the_test_looked_at_passes(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import pytest
        from starlette.testclient import TestClient
        from myapp import app

        @pytest.mark.offload(on_error="continue")
        def test_audit(offload_runtime):
            with TestClient(app) as client:
                client.get("/audit")
            (failure,) = offload_runtime.failures
            assert failure.name == "broken_audit"
            assert str(failure.error) == "audit store down"
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_the_marker_can_allow_failures(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import pytest
        from starlette.testclient import TestClient
        from myapp import app

        @pytest.mark.offload(on_error="stop", allow_task_failures=True)
        def test_audit(offload_runtime):
            with TestClient(app) as client:
                client.get("/audit")
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_the_marker_sets_config_fields(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import threading
        import pytest
        import offload

        pytestmark = pytest.mark.offload(thread_limit=3)

        @pytest.mark.offload(executor="inline")
        @pytest.mark.anyio
        async def test_inline(offload_config, offload_runtime):
            assert (offload_config.executor, offload_config.thread_limit) == ("inline", 3)
            where = []
            tasks = offload.BackgroundTasks()
            tasks.add_task(lambda: where.append(threading.current_thread().name))
            await tasks()
            assert tasks.reports[0].executor == "inline"
            assert offload_runtime.reports[0].executor == "inline"
        """
    )
    # anyio's own anyio_backend fixture runs the test on every installed backend.
    app.runpytest().assert_outcomes(passed=2)


def test_unknown_marker_fields_stop_the_run_at_collection(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import pytest

        @pytest.mark.offload(thread_limt=3)
        def test_typo(offload_config):
            pass
        """
    )
    result = app.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_typo: @pytest.mark.offload: unknown config key 'thread_limt'"
            " (did you mean thread_limit?); valid keys are: concurrency, dask_address, detach, *"
        ]
    )


def test_bad_marker_values_stop_the_run_at_collection(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import pytest

        @pytest.mark.offload(on_error="ignore")
        def test_bad(offload_config):
            pass
        """
    )
    result = app.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.offload: on_error must be one of*got 'ignore'"])


def test_offload_config_can_be_overridden_in_a_conftest(app: pytest.Pytester) -> None:
    app.makeconftest(
        """
        import pytest
        import offload

        @pytest.fixture
        def offload_config():
            return offload.OffloadConfig(on_error="collect", task_timeout=5)
        """
    )
    app.makepyfile(
        """
        import offload
        from offload._default import current_runtime

        def test_config(offload_runtime):
            assert current_runtime() is offload_runtime
            assert offload_runtime.config.on_error == "collect"
            assert offload_runtime.config.task_timeout == 5
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_the_runtime_is_drained_and_left_at_teardown(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        from offload._runtime import entered_runtime

        def test_one(offload_runtime):
            assert entered_runtime() is offload_runtime

        def test_two():
            assert entered_runtime() is None
        """
    )
    app.runpytest().assert_outcomes(passed=2)


def test_the_marker_applies_on_top_of_an_overridden_offload_config(app: pytest.Pytester) -> None:
    app.makeconftest(
        """
        import pytest
        import offload

        @pytest.fixture
        def offload_config():
            return offload.OffloadConfig(on_error="collect", task_timeout=5)
        """
    )
    app.makepyfile(
        """
        import pytest

        @pytest.mark.offload(task_timeout=2, thread_limit=3)
        def test_config(offload_config, offload_runtime):
            assert offload_config.task_timeout == 5  # the override's own config, as it made it
            config = offload_runtime.config
            assert (config.on_error, config.task_timeout, config.thread_limit) == (
                "collect", 2, 3
            )
        """
    )
    app.runpytest().assert_outcomes(passed=1)


def test_an_unexamined_failure_is_an_error_at_teardown_not_a_failure(
    app: pytest.Pytester,
) -> None:
    app.makepyfile(
        """
        import offload, pytest

        def broken():
            raise RuntimeError("boom")

        @pytest.mark.offload(on_error="continue")
        @pytest.mark.anyio
        async def test_it(offload_runtime, anyio_backend):
            await offload.BackgroundTasks([broken])()

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """
    )
    result = app.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_it*"])
