"""The ``offload`` pytest plugin: fixtures and a marker for testing background tasks.

Registered through the ``pytest11`` entry point, so installing offload is enough:

- ``offload_config``: the config a test runs with (override it in a ``conftest.py``);
- ``offload_runtime``: a :class:`~offload.Runtime` entered for the test and drained after it;
  a task that failed without the test reading ``offload_runtime.failures`` (or ``reports``)
  afterwards is reported as an error at the test's teardown (``ERROR at teardown of ...``,
  besides the test's own outcome), with the task's name and traceback;
- ``offload_recorder``: records scheduled tasks instead of running them;
- ``@pytest.mark.offload(**config_fields)``: per-test config, plus
  ``allow_task_failures=True`` to let unexamined task failures pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from ._config import OffloadConfig
from ._exceptions import ConfigError
from ._testing import ObservedRuntime, TaskRecorder, describe_failures

_ALLOW_FAILURES = "allow_task_failures"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "offload(**config_fields): run the test with these OffloadConfig fields; "
        f"{_ALLOW_FAILURES}=True lets background task failures pass unexamined",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Checked at collection so a typo in a marker stops the run before any test starts.
    for item in items:
        try:
            _marker_fields(item)
        except (ConfigError, TypeError) as error:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.offload: {error}") from None


#: The config the plugin's own ``offload_config`` made for a test, so ``offload_runtime``
#: knows whether the marker's fields are in it already.
_MARKED_CONFIG = pytest.StashKey[OffloadConfig]()


@pytest.fixture
def offload_config(request: pytest.FixtureRequest) -> OffloadConfig:
    """The config this test runs with: the defaults, changed by ``@pytest.mark.offload``."""
    config = OffloadConfig().replace(**_marker_fields(request.node))
    request.node.stash[_MARKED_CONFIG] = config
    return config


@pytest.fixture
def offload_runtime(
    request: pytest.FixtureRequest, offload_config: OffloadConfig
) -> Iterator[ObservedRuntime]:
    """A runtime entered for this test on the test's anyio backend, drained at teardown.

    Its ``reports`` and ``failures`` show what ran. A task failure the test did not look at
    (by reading ``failures`` or ``reports`` after it) is reported as an error at teardown,
    with the task's name and traceback.

    Its config is ``offload_config``; when a ``conftest.py`` overrides that fixture, the
    marker's fields still apply on top of what it returns.
    """
    config = offload_config
    if request.node.stash.get(_MARKED_CONFIG, None) is not config:  # an override's config
        config = config.replace(**_marker_fields(request.node))
    runtime = ObservedRuntime(config)
    backend, options = _backend(request)
    # A portal keeps the runtime on a loop of its own, so sync tests (TestClient) get it too.
    with start_blocking_portal(backend, options) as portal:
        runtime.portal = portal
        portal.call(runtime.__aenter__)
        try:
            yield runtime
        finally:
            portal.call(runtime.aclose)
            runtime.portal = None
    unseen = runtime.unseen_failures()
    marker = request.node.get_closest_marker("offload")
    allowed = marker is not None and marker.kwargs.get(_ALLOW_FAILURES, False)
    if unseen and not allowed:
        pytest.fail(
            f"{len(unseen)} background task(s) failed and the test did not look at "
            "offload_runtime.failures (or mark it @pytest.mark.offload(allow_task_failures=True)):"
            f"\n{describe_failures(unseen)}",
            pytrace=False,
        )


@pytest.fixture
def offload_recorder(offload_runtime: ObservedRuntime) -> TaskRecorder:
    """Record the tasks scheduled during the test instead of running them."""
    return TaskRecorder(offload_runtime)


def _marker_fields(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("offload"))):  # the closest marker wins
        if marker.args:
            raise TypeError(f"takes keyword arguments only, got {marker.args!r}")
        fields.update(marker.kwargs)
    allowed = fields.pop(_ALLOW_FAILURES, False)
    if not isinstance(allowed, bool):
        raise TypeError(f"{_ALLOW_FAILURES} must be True or False, got {allowed!r}")
    OffloadConfig().replace(**fields)  # validates every field name and value
    return fields


def _backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if "anyio_backend" not in request.fixturenames:
        return "asyncio", {}
    backend = request.getfixturevalue("anyio_backend")
    if isinstance(backend, str):
        return backend, {}
    name, options = backend
    return str(name), dict(options)
