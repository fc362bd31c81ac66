from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest

from offload import _runtime
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
    _runtime._default = None
    _runtime._default_config = None
    yield
    assert not _runtime._entered, "a test left a Runtime entered"
    _registry._factories.clear()
    _registry._factories.update(factories)
    if _runtime._default is not None:
        _runtime._close_at_exit([_runtime._default])  # stop any pool the test's tasks started
    _runtime._default = None
    assert multiprocessing.active_children() == [], "a test left worker processes alive"
    _runtime._default_config = None
