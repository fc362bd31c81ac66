"""offload's tasks in the shape Hypern's responses take: ``backgrounds=[...]``.

::

    from hypern.response import JSONResponse

    from offload.hypern import BackgroundTask

    def create_report(request):
        return JSONResponse(
            {"status": "accepted"},
            backgrounds=[BackgroundTask(render_pdf, 42).set(executor="process")],
        )

Hypern 0.3 (tested with 0.3.15; Hypern 1 has another API) is no ASGI framework: when a
response is made, it reads each task's ``function``, ``args``, ``kwargs`` and
``timeout_secs``, and calls ``function(*args, **kwargs)`` in a pool of threads of its own,
where no event loop runs. The tasks here give Hypern a ``function`` that hands the task to
offload and returns: the task then runs on the executor chosen for it, with its timeout,
retries, report and ``on_report``, on an event loop that offload keeps in a thread of each
server process. So a long task holds none of Hypern's few background threads, every task
of the process shares one ``thread_limit`` and one pool of worker processes, and those
worker processes end with the server process, whatever ends it.

:class:`BackgroundTasks` runs a whole list that way, in order (or together, with
``concurrency="group"``) and with its ``on_error``; Hypern would start the tasks of
``backgrounds=`` in no particular order. Hypern's own ``BackgroundTask(func, args=[...],
kwargs={})`` objects may join offload's lists like any other framework's.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, wait

import anyio
from anyio.from_thread import BlockingPortal

from ._default import current_runtime
from ._exceptions import missing_extra
from ._handles import cancel
from ._runtime import CANCEL_GRACE
from ._task import BackgroundTask as _BackgroundTask
from ._task import BackgroundTasks as _BackgroundTasks


def _check_hypern() -> None:
    try:
        responses = importlib.import_module("hypern.response")
    except ModuleNotFoundError as exc:
        if exc.name != "hypern":
            raise _unsupported() from exc
        raise missing_extra("offload.hypern", "Hypern", "hypern", exc) from exc
    if "backgrounds" not in inspect.signature(responses.JSONResponse.__init__).parameters:
        raise _unsupported()


def _unsupported() -> ImportError:
    return ImportError(
        "offload.hypern needs a Hypern whose responses take backgrounds=[...] (Hypern 0.3); "
        "install offload's 'hypern' extra: pip install \"offload[hypern]\" where "
        "offload's wheel is installed, or pip install \".[hypern]\" in offload's clone",
        name="hypern",
    )


_check_hypern()

__all__ = ["BackgroundTask", "BackgroundTasks"]

logger = logging.getLogger("offload")


class BackgroundTask(_BackgroundTask):
    """offload's :class:`~offload.BackgroundTask` that a Hypern response's
    ``backgrounds=`` takes, run by offload once Hypern calls it."""

    __slots__ = ()

    #: Read by Hypern, which does not enforce it: the task's own ``timeout`` applies.
    timeout_secs = None

    @property
    def function(self) -> Callable[..., None]:
        """What Hypern calls, in a thread of its own: it hands the task to offload."""
        return self._run_for_hypern

    def _run_for_hypern(self, /, *_args: object, **_kwargs: object) -> None:
        # Hypern passes back the task's own args and kwargs, which the task already has.
        _bridge.submit(self, [self])


class BackgroundTasks(_BackgroundTasks):
    """offload's :class:`~offload.BackgroundTasks` that a Hypern response's
    ``backgrounds=`` takes as one item, run whole by offload once Hypern calls it."""

    #: Read by Hypern, which does not enforce it: each task's own ``timeout`` applies.
    timeout_secs = None

    @property
    def function(self) -> Callable[..., None]:
        """What Hypern calls, in a thread of its own: it hands the list to offload."""
        return self._run_for_hypern

    @property
    def args(self) -> tuple[()]:
        """What Hypern passes to :attr:`function`: nothing, the list holds its tasks."""
        return ()

    @property
    def kwargs(self) -> dict[str, object]:
        """What Hypern passes to :attr:`function` by keyword: nothing."""
        return {}

    def _run_for_hypern(self, /) -> None:
        _bridge.submit(self, list(self.tasks))


class _Bridge:
    """The event loop where offload runs what Hypern hands it, in a thread of its own.

    One loop per process, so that every task of a server process shares the thread
    executor's limiter (which belongs to one loop), and Hypern's threads return at once.
    Started on first use, in the server process: Hypern forks its server processes, and a
    thread does not survive a fork. At interpreter exit, the tasks still running get the
    config's ``shutdown_timeout`` to end, then are cancelled and named.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._running: dict[Future[None], list[_BackgroundTask]] = {}  # by run, its tasks

    def submit(self, work: Callable[[], Awaitable[None]], tasks: list[_BackgroundTask]) -> None:
        """Run ``await work()``, which runs ``tasks``, on the loop; log what it raises, as
        no caller is left."""
        names = [task.name for task in tasks]
        try:
            portal = self._started()
            future = portal.start_task_soon(_run, work, names)
        except Exception:
            logger.exception("Background task(s) %s could not be handed to offload", names)
            return
        with self._lock:
            self._running[future] = tasks
        future.add_done_callback(self._ended)

    def _started(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                ready: Future[BlockingPortal] = Future()
                thread = threading.Thread(
                    target=_serve, args=(ready,), name="offload-hypern", daemon=True
                )
                thread.start()
                self._portal, self._thread = ready.result(), thread
            return self._portal

    def _ended(self, future: Future[None]) -> None:
        with self._lock:
            self._running.pop(future, None)

    def close(self) -> None:
        """Wait up to ``shutdown_timeout`` for the runs in flight, cancel and name the rest,
        and stop the loop."""
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = None
            running = dict(self._running)
        if portal is None or thread is None:
            return
        timeout = current_runtime().config.shutdown_timeout
        _, left = wait(running, timeout)
        # Last first, so that stopping a list's running task starts none of its pending ones.
        tasks = [task for future in left for task in reversed(running[future])]
        stopped = [task.name for task in tasks if cancel(task.id)][::-1]
        if stopped:
            logger.error(
                "offload stopped %d background task(s) handed over by Hypern, unfinished "
                "after %ss: %s",
                len(stopped), timeout, ", ".join(stopped),
            )  # fmt: skip
        wait(left, CANCEL_GRACE)
        portal.call(portal.stop, True)  # what swallowed its cancellation
        thread.join()

    def forget(self) -> None:
        """Forget the loop of the parent process, in a forked child that lacks its thread."""
        self._lock = threading.Lock()
        self._portal = self._thread = None
        self._running = {}


def _serve(ready: Future[BlockingPortal]) -> None:
    async def serve() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    try:
        anyio.run(serve)
    except BaseException as exc:
        if not ready.done():
            ready.set_exception(exc)
        raise


async def _run(work: Callable[[], Awaitable[None]], names: list[str]) -> None:
    try:
        await work()
    except Exception as exc:  # its failures are logged by the runner, with their tracebacks
        logger.error(
            "Background task(s) %s handed over by Hypern ended with %s, which their on_error "
            "raises; it is only logged, since Hypern does not look at it",
            ", ".join(names), type(exc).__name__,
        )  # fmt: skip


_bridge = _Bridge()
os.register_at_fork(after_in_child=_bridge.forget)
# Registered after offload's own exit handler, so it runs first: the tasks end before the
# default runtime closes their executors.
atexit.register(_bridge.close)
