"""lifespan: an ASGI lifespan that runs the application inside an offload Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, overload

from ._config import OffloadConfig
from ._runtime import Runtime

AppT = TypeVar("AppT")
StateT = TypeVar("StateT")

#: What ``Starlette(lifespan=...)`` and ``FastAPI(lifespan=...)`` take: ``app -> async with``,
#: which gives the lifespan state (or ``None``).
Lifespan = Callable[[AppT], AbstractAsyncContextManager[StateT]]


@overload
def lifespan(config: OffloadConfig | None = None) -> Lifespan[object, None]: ...


@overload
def lifespan(
    config: OffloadConfig | None, app_lifespan: Lifespan[AppT, StateT]
) -> Lifespan[AppT, StateT]: ...


@overload
def lifespan(
    config: OffloadConfig | None = None, *, app_lifespan: Lifespan[AppT, StateT]
) -> Lifespan[AppT, StateT]: ...


def lifespan(
    config: OffloadConfig | None = None, app_lifespan: Lifespan[Any, Any] | None = None
) -> Lifespan[Any, Any]:
    """Return a lifespan that runs the application inside a :class:`~offload.Runtime`.

    ::

        app = Starlette(routes=routes, lifespan=offload.lifespan(config))

    To keep the application's own lifespan, pass it as ``app_lifespan``; what it yields (the
    lifespan state) still reaches the requests::

        @asynccontextmanager
        async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            async with create_pool() as pool:
                yield {"pool": pool}

        app = FastAPI(lifespan=offload.lifespan(config, app_lifespan))

    The application's lifespan is entered first and exited last: the runtime starts (and
    pre-warms its executors) once the application's resources exist, and at shutdown drains
    the tasks still running, up to ``shutdown_timeout``, before the application's own shutdown
    closes what those tasks may use.

    :param config: the runtime's config; the default config (see :func:`~offload.configure`)
        when ``None``, read when the application starts
    :param app_lifespan: the application's own lifespan: a function of the application that
        returns an async context manager, as ``@asynccontextmanager`` makes
    :raises TypeError: if ``config`` is not an :class:`~offload.OffloadConfig`, or
        ``app_lifespan`` is not callable
    """
    if config is not None and not isinstance(config, OffloadConfig):
        fix = (
            "pass the application's own lifespan second: lifespan(config, app_lifespan)"
            if callable(config)
            else "build one with OffloadConfig(...) or OffloadConfig.from_mapping(...)"
        )
        raise TypeError(f"lifespan() needs an OffloadConfig or None first, got {config!r}; {fix}")
    if app_lifespan is not None and not callable(app_lifespan):
        raise TypeError(
            f"app_lifespan must be the application's lifespan function, got {app_lifespan!r}"
        )

    @asynccontextmanager
    async def offload_lifespan(app: Any) -> AsyncIterator[Any]:
        if app_lifespan is None:
            async with Runtime(config):
                # None, not a state: a state would need a server that supports one.
                yield None
            return
        async with app_lifespan(app) as state, Runtime(config):
            yield state

    return offload_lifespan
