"""Detached task lists: run on a runtime's own event loop, apart from the requests that made them.

A :class:`Ticket` is a detached list's place among a runtime's pending work. A runtime's
*supervisor* is a task on the event loop that entered the runtime; its task group
outlives every request, so a detached list runs there and no client disconnect, middleware or
request cancellation reaches it.

Two constraints shape it. anyio starts a task only inside a task group, which the task that
entered it must also exit; but a runtime may be entered and closed by two different tasks (a
blocking portal runs each call in a task of its own). So the supervisor is started from a
helper thread with ``anyio.from_thread.run(..., token=...)``, which runs it as a task of its
own on the runtime's loop (a system task on trio) and blocks only the helper thread. And task
lists may be scheduled from any thread or event loop (a test client's portal, a sync endpoint's
worker thread), while a memory object stream may only be used on its own loop. So lists reach
the supervisor through a stream fed on that loop: directly from the loop's own thread, through
the loop's token (``run_sync_soon``, which never blocks) from anywhere else.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.from_thread
from anyio.abc import TaskGroup
from anyio.lowlevel import EventLoopToken, current_token
from anyio.streams.memory import MemoryObjectSendStream

from .executors._futures import call_soon, wait_future

T = TypeVar("T", bound=Hashable)

logger = logging.getLogger("offload")

#: An item on its way to the supervisor, with the context of the code that scheduled it.
Delivery = tuple[T, contextvars.Context | None]


class Supervisor(Generic[T]):
    """A task on one event loop that runs each item it is given in a task group of its own.

    :param handle: the coroutine function run, in a task of its own, for each item
    :param lost: called, on the loop, with an item that will never be handled: it arrived
        after :meth:`close`, or was still queued when the supervisor was cancelled
    :param abandoned: called once, on the loop, with the items (running or queued) that were
        cut short because the event loop ended before :meth:`close` (a server's forced exit)
    """

    def __init__(
        self,
        handle: Callable[[T], Coroutine[Any, Any, None]],
        lost: Callable[[T], None],
        abandoned: Callable[[list[T]], None] = lambda items: None,
    ) -> None:
        self._handle = handle
        self._lost = lost
        self._abandoned = abandoned
        self._token: EventLoopToken | None = None
        self._loop_thread = 0
        self._inbox: MemoryObjectSendStream[Delivery[T]] | None = None
        self._group: TaskGroup | None = None
        self._host: threading.Thread | None = None
        self._ended: Future[None] = Future()
        self._running: dict[T, None] = {}  # the items being handled, in the order they started
        self._stopping = False
        self._cut_short: list[T] = []  # items its event loop's end cancelled, before close()

    async def start(self) -> None:
        """Start the supervisor on the current event loop; return once it takes items."""
        token = current_token()
        started: Future[None] = Future()
        self._host = threading.Thread(
            target=self._host_main, args=(token, started), name="offload-runtime", daemon=True
        )
        self._host.start()
        # Shielded: a supervisor left starting could never be closed.
        with anyio.CancelScope(shield=True):
            await wait_future(started)

    def submit(self, item: T) -> None:
        """Hand ``item`` to the supervisor, from any thread or event loop; never blocks.

        From the supervisor's own loop, the item keeps the caller's context variables (a
        request id a logging filter reads, say). From another loop it cannot: that context
        also names the other loop's async library.

        :raises anyio.RunFinishedError: if the supervisor's event loop has ended
        """
        if threading.get_ident() == self._loop_thread:
            self._deliver((item, contextvars.copy_context()))
            return
        token = self._token
        assert token is not None, "start the supervisor first"
        if not call_soon(token, self._deliver, (item, None)):
            raise anyio.RunFinishedError

    async def close(self, grace: float = math.inf) -> list[T]:
        """Take no more items, cancel those still running, and wait until the supervisor ends,
        for up to ``grace`` seconds: an item that swallows its cancellation must not hang
        the caller. Shielded from the caller's own cancellation.

        :return: the items still running after ``grace`` seconds, left to end on their own
        """
        token = self._token
        if token is not None:
            if threading.get_ident() == self._loop_thread:
                self._stop()
            else:
                call_soon(token, self._stop)  # if its loop has ended, the supervisor has too
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            await wait_future(self._ended)
        if not self._ended.done():
            return list(self._running)
        if self._host is not None:
            self._host.join()  # its last act was to end `_ended`, so this returns at once
        return []

    def _host_main(self, token: EventLoopToken, started: Future[None]) -> None:
        try:
            anyio.from_thread.run(self._serve, started, token=token)
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            # Else its event loop ended with the supervisor open: _serve reported what it lost.
        finally:
            self._ended.set_result(None)

    async def _serve(self, started: Future[None]) -> None:
        send, receive = anyio.create_memory_object_stream[Delivery[T]](math.inf)
        with receive:
            try:
                async with anyio.create_task_group() as group:
                    self._group, self._inbox = group, send
                    self._token, self._loop_thread = current_token(), threading.get_ident()
                    started.set_result(None)
                    async for item, context in receive:
                        if context is None:
                            group.start_soon(self._run, item)
                        else:  # a new task copies the current context, on asyncio and trio
                            context.run(partial(group.start_soon, self._run, item))
            finally:
                # Cancelled with items still queued: they never started.
                queued: list[T] = []
                while True:
                    try:
                        item, _ = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    queued.append(item)
                if not self._stopping:  # not closed: its event loop is ending under it
                    self._abandoned([*self._cut_short, *queued])
                for item in queued:
                    self._lost(item)

    async def _run(self, item: T) -> None:
        self._running[item] = None
        try:
            await self._handle(item)
        except anyio.get_cancelled_exc_class():
            if not self._stopping and not self._cut_short:  # the first one cancelled
                self._cut_short = list(self._running)  # all of them, in the order they started
            raise
        finally:
            del self._running[item]

    def _deliver(self, delivery: Delivery[T]) -> None:
        # Runs on the supervisor's loop, where the stream may be used.
        assert self._inbox is not None
        try:
            self._inbox.send_nowait(delivery)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._lost(delivery[0])

    def _stop(self) -> None:
        self._stopping = True
        if self._inbox is not None:
            self._inbox.close()
        if self._group is not None:
            self._group.cancel_scope.cancel()


class Named(Protocol):
    """A task, as far as naming it in the log goes."""

    @property
    def name(self) -> str: ...


class Run(Protocol):
    """A task list's run, as the runtime that tracks, drains and cancels it sees it."""

    @property
    def on_error(self) -> str:
        """The run's error policy."""
        ...

    async def execute(self, *, detached: bool = False) -> None:
        """Run the tasks; raise what the error policy says to raise."""
        ...

    def cancel(self) -> None:
        """Cancel the run from any thread."""
        ...

    def unfinished(self) -> list[str]:
        """Return the names of the tasks that have not ended yet."""
        ...


class Ticket:
    """A detached task list's place among a runtime's pending work, from the endpoint that
    scheduled it until its last task ends: what ``max_pending`` counts, and what a closing
    runtime waits for and names.

    :param release: the runtime's way to stop counting the ticket; ``False`` if it already has
    :param tasks: the list's tasks, named if the list never runs
    :ivar run: the run handed over, once the list's response has been sent
    :ivar on_end: called with the run once it has ended
    """

    __slots__ = ("on_end", "release", "run", "tasks")

    def __init__(self, release: Callable[[Ticket], bool], tasks: Sequence[Named]) -> None:
        self.release = release
        self.tasks = tasks
        self.run: Run | None = None
        self.on_end: Callable[[Run], None] | None = None

    def unfinished(self) -> list[str]:
        """Return the names of the list's tasks that have not ended yet."""
        if self.run is not None:
            return self.run.unfinished()
        return [task.name for task in self.tasks]

    def end(self) -> None:
        """Stop counting the list as pending (once; later calls do nothing)."""
        if self.release(self) and self.run is not None and self.on_end is not None:
            self.on_end(self.run)

    def abandon(self) -> None:
        """End a list garbage collected before it was handed over, naming its tasks in a
        warning: its response was never sent, so its tasks never ran."""
        if self.release(self) and self.run is None:
            logger.warning(
                "Detached background tasks %s were never run: their response was not sent",
                ", ".join(task.name for task in self.tasks),
            )


R = TypeVar("R")


class Reservation(Generic[R]):
    """A detached list's ticket, from the list's first task until the list is handed over.

    A list whose response is never sent is never awaited: if it is garbage collected while
    it holds a ticket, its place must not stay taken, and its tasks must not vanish unnamed,
    so the ticket is then abandoned (see :meth:`Ticket.abandon`).

    :param owner: the task list; the reservation ends with it
    :param runtime: the runtime the ticket is from
    :param ticket: the list's ticket
    """

    __slots__ = ("_abandon", "runtime", "ticket")

    def __init__(self, owner: object, runtime: R, ticket: Ticket) -> None:
        self.runtime = runtime
        self.ticket = ticket
        self._abandon = weakref.finalize(owner, ticket.abandon)
        self._abandon.atexit = False

    def take(self) -> Ticket:
        """Take the ticket out, to hand the list over or to end it: it is no longer abandoned."""
        self._abandon.detach()
        return self.ticket
