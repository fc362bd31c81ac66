"""DaskExecutor: run tasks on a Dask cluster, for when one machine's cores are not enough."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import Executor as FuturesExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

from .._exceptions import missing_extra

try:
    import cloudpickle  # type: ignore[import-untyped]  # Dask's serializer; no types
    from distributed import Client, KilledWorker
except ImportError as exc:  # pragma: no cover (the dask tests run with distributed installed)
    raise missing_extra(
        "offload's dask executor", "Dask's distributed package", "dask", exc
    ) from exc

from .._carrier import current_carrier
from .._exceptions import ConfigError, NotPicklable, OffloadError, WorkerCrashed
from .._progress import Progress, deliver, open_route
from ._dask_worker import TOPIC, run_reporting_progress
from ._pickling import first_unpicklable
from .pool import PoolExecutor

if TYPE_CHECKING:
    from .._call import Call
    from .._config import OffloadConfig

P = ParamSpec("P")
T = TypeVar("T")

#: Tasks whose call is known to pickle; a task's call does not change once it is made.
_picklable: weakref.WeakSet[Call] = weakref.WeakSet()


class DaskExecutor(PoolExecutor):
    """Run tasks on the workers of a Dask cluster, through a ``distributed.Client``.

    Built on :class:`PoolExecutor` over the client's ``concurrent.futures`` face, so the
    event loop never waits on Dask: it works the same on asyncio and trio.

    - **A client you pass** stays yours: offload never closes it. It must be synchronous
      (``Client(address)``, not ``Client(..., asynchronous=True)``).
    - **An address** (``"tcp://10.0.0.5:8786"``) makes offload connect on :meth:`start`
      (a runtime does so when it starts) and close that client on :meth:`aclose`.
    - Every call is submitted with ``pure=False``: two identical calls both run, where Dask
      would otherwise run one and hand both callers its result. The call goes as one
      opaque callable, so Dask neither takes a task's keyword arguments (``priority=``,
      ``key=``, ``retries=``) for its own options nor looks into its arguments for futures.
    - :meth:`prepare` checks the call with cloudpickle, Dask's serializer, as soon as the
      task is bound here: a lambda is fine, a lock is :exc:`NotPicklable` before the
      response is sent.
    - Workers must be able to import the task functions' modules (and offload, for a
      coroutine function, which runs there with :func:`asyncio.run`).

    Errors: a task whose worker died is :exc:`WorkerCrashed` once Dask gives up on it
    (Dask first runs it again on other workers, up to the scheduler's
    ``distributed.scheduler.allowed-failures``, 3 by default). A timeout cancels the Dask
    future: a task still queued never runs, but one already running runs on to its end
    in its worker, because Dask cannot stop a running Python function.

    :param client_or_address: a ``distributed.Client``, or a scheduler address
    :param options: keyword arguments for ``distributed.Client`` when given an address,
        e.g. ``timeout=10`` or ``security=...``; the client is not made the process's
        default Dask client unless ``set_as_default=True`` is among them
    :raises TypeError: if ``client_or_address`` is neither, or options come with a client
    """

    name = "dask"

    def __init__(self, client_or_address: Client | str, **options: Any) -> None:
        if isinstance(client_or_address, Client):
            if options:
                raise TypeError(
                    "DaskExecutor options configure the client it makes from an address; "
                    f"got {sorted(options)!r} with a client, which is already configured"
                )
            if client_or_address.asynchronous:
                raise TypeError(
                    "DaskExecutor needs a synchronous distributed.Client, got an asynchronous "
                    f"one {client_or_address!r}; pass Client(address) or just the address"
                )
            super().__init__(_ClientPool(client_or_address))
        elif isinstance(client_or_address, str) and client_or_address:
            super().__init__(partial(_connect, client_or_address, options))
        else:
            raise TypeError(
                "DaskExecutor needs a distributed.Client or a scheduler address such as "
                f"'tcp://10.0.0.5:8786', got {client_or_address!r}"
            )
        self._target = client_or_address

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        """Build an executor for ``config.dask_address``; it connects when it starts.

        :raises ConfigError: if no address is configured
        """
        if config.dask_address is None:
            raise ConfigError(
                "executor 'dask' needs the address of a Dask scheduler, got dask_address=None; "
                "set OFFLOAD_DASK_ADDRESS or OffloadConfig(dask_address='tcp://host:8786')"
            )
        return cls(config.dask_address)

    def prepare(self, task: Call) -> None:
        """Pickle the task's call with cloudpickle now, as Dask will when it submits it.

        :raises NotPicklable: naming the task and the part of the call that does not pickle
        """
        if task.payload is not None or task in _picklable:
            return  # the standard pickle managed it already, so cloudpickle will
        try:
            cloudpickle.dumps((task.func, task.args, task.kwargs))
        except Exception as exc:
            raise NotPicklable(_explain(task, exc)) from exc
        _picklable.add(task)

    async def run(self, task: Call) -> Any:
        """Run ``task`` on a Dask worker and return its result.

        Cancelling the run cancels the Dask future: a queued task never runs, a running
        one runs on in its worker and its result is dropped.

        :raises WorkerCrashed: if Dask gave up on the task because its workers died
        :raises OffloadError: if Dask cancelled the task (its client closed or lost the
            scheduler) before it ended
        :raises NotPicklable: if the task was not prepared and cannot be pickled
        """
        self.prepare(task)
        try:
            with open_route(task.id):  # the task's progress, while it runs, to its run
                return await super().run(task)
        except KilledWorker as exc:
            raise WorkerCrashed(
                f"dask worker {exc.last_worker.address} died while running task "
                f"{task.name!r}, and Dask gave up on it after "
                f"{exc.allowed_failures + 1} worker(s) died running it; see the worker's log"
            ) from exc
        except CancelledError:  # only Dask cancels its futures: offload's own is a cancel scope
            raise OffloadError(
                f"dask cancelled task {task.name!r} before it ended: the client closed or "
                "lost its scheduler, or another client cancelled it"
            ) from None

    def submit_to(self, pool: FuturesExecutor, task: Call) -> Future[Any]:
        """Submit the call wrapped so that what it says with ``set_progress`` comes back, and
        so that it runs in the task's trace context."""
        carrier = current_carrier()
        return pool.submit(
            run_reporting_progress, task.id, carrier, task.func, task.args, task.kwargs
        )

    def __repr__(self) -> str:
        return f"<DaskExecutor {self.name!r} {self._target!r}>"


class _ClientPool(FuturesExecutor):
    """The ``concurrent.futures`` face of a synchronous ``distributed.Client``.

    :meth:`PoolExecutor.aclose` shuts down only a pool its factory made, so
    :meth:`shutdown` closes the client: one made from an address, never one passed in.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        # pure=False: Dask would otherwise name identical calls alike and run them once.
        self._executor = client.get_executor(pure=False)  # type: ignore[no-untyped-call]
        # Progress that tasks send from the workers, handed to their runs as it comes.
        client.subscribe_topic(TOPIC, _deliver_progress)  # type: ignore[no-untyped-call]

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        # One opaque callable (see DaskExecutor); Dask still names the key after fn.
        future: Future[T] = self._executor.submit(partial(fn, *args, **kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)
        self.client.close()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"<_ClientPool {self.client!r}>"


def _deliver_progress(event: tuple[float, tuple[str, float, float | None, str | None]]) -> None:
    _, (task_id, done, total, message) = event
    deliver(task_id, Progress(done, total, message))


def _connect(address: str, options: dict[str, Any]) -> _ClientPool:
    # Not the process's default client: dask.compute() elsewhere must not move to it.
    options = {"set_as_default": False, **options}
    return _ClientPool(Client(address, **options))  # type: ignore[no-untyped-call]


def _explain(task: Call, exc: Exception) -> str:
    culprit = first_unpicklable(task, cloudpickle.dumps)
    if culprit is None:
        return (
            f"dask task {task.name!r} cannot be pickled ({type(exc).__name__}: {exc}); "
            "pass a function and plain data"
        )
    return (
        f"dask task {task.name!r} cannot be pickled: {culprit.where} does not pickle "
        f"({culprit.problem}); pass plain data a worker can rebuild the object from, "
        "and no function that holds such an object"
    )
