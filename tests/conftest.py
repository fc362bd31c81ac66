from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest

import offload
from offload import _default
from offload._hooks import global_hooks
from offload._runtime import entered_runtime
from offload.executors import _registry

pytest_plugins = ["pytester"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on both of anyio's backends."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _isolated_offload() -> Iterator[None]:
    """Give each test a fresh default runtime and registry, whatever the last test did."""
    factories = dict(_registry._factories)
    hooks_before = global_hooks()  # those an imported module adds, as offload.fastapi does
    _default.reset()
    yield
    assert entered_runtime() is None, "a test left a Runtime entered"
    _registry._factories.clear()
    _registry._factories.update(factories)
    _default.reset()  # stops any pool the test's tasks started
    for hooks in global_hooks():  # added for every runtime, by a test or a docs sample
        if hooks not in hooks_before:
            offload.remove_hooks(hooks)
    assert multiprocessing.active_children() == [], "a test left worker processes alive"
