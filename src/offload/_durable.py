"""Durable task lists: journaled before the endpoint returns, run at least once.

A runtime whose config names a ``journal`` gets a :class:`DurableService`. The service:

- writes a durable list's tasks to the journal as they join it (on the event loop: it is
  the endpoint's own check that the work is safe; a few tens of microseconds);
- follows them, as hooks, while they run, and has the journal forget each one that ends (a
  task that failed after its retries stays there as ``failed``);
- holds a lease on the journal, renewed by a thread of its own, and takes over the tasks of
  runtimes that are gone (dead, or whose lease ran out), to run them with their options and
  in their order: at start, then every few seconds.

The journal's bookkeeping (leases, outcomes, takeovers) runs on that thread, never on the
event loop.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import anyio
import anyio.to_thread
from anyio.lowlevel import EventLoopToken, current_token

from ._call import Call
from ._callables import is_async_callable
from ._exceptions import NotPicklable, OffloadError
from ._hooks import TaskHooks
from ._ids import new_id
from ._journal import Entry, Journal, NewTask
from ._report import TaskReport
from ._runner import TaskRun
from ._runtime import Runtime, set_journal_service
from .executors._futures import call_soon
from .executors._pickling import payload_of

if TYPE_CHECKING:
    from ._config import Concurrency, OnError
    from ._options import ExecutorSpec

logger = logging.getLogger("offload")


#: How long an owner's lease holds without renewal: the longest a takeover waits for a
#: runtime on another host (one of this host whose process is gone is taken over at once).
LEASE = 10.0
#: How often the lease is renewed and the journal searched for tasks to take over.
SWEEP = LEASE / 4
#: How long a write waits for another process's transaction before it fails, in seconds.
BUSY = 5.0
#: Outcomes written between checkpoints, at most (besides one each sweep).
CHECKPOINT_ROWS = 2_000
#: How long the thread lets outcomes gather once woken, in seconds.
BATCH = 0.005
#: Outcomes written in one transaction, at most: the thread's stretches of Python and of
#: holding the journal stay short.
CHUNK = 64

#: What the journal learns of a task: ``(id, attempt)`` as it starts, ``(id, None)`` when it
#: ended and leaves, ``(id, (error type, attempts))`` when it failed after its retries.
Outcome = tuple[str, int | tuple[str, int] | None]


class JournaledTask:
    """A task taken from the journal, with what the runner needs to run it again."""

    __slots__ = ("args", "func", "id", "is_async", "kwargs", "name", "payload", "retries",
                 "runs_on", "timeout")  # fmt: skip

    def __init__(self, entry: Entry, payload: bytes) -> None:
        self.func, self.args, self.kwargs = pickle.loads(payload)
        self.payload: bytes | None = payload  # what the process executor sends as it is
        self.id = entry.id
        self.name = entry.name
        self.is_async = is_async_callable(self.func)
        self.runs_on: ExecutorSpec | None = entry.executor
        self.timeout = entry.timeout
        self.retries = entry.retries

    def __repr__(self) -> str:
        return f"<JournaledTask {self.name!r}>"


class DurableTask(Call, Protocol):
    """What a durable list journals of a task: its call, and its options."""

    @property
    def runs_on(self) -> ExecutorSpec | None: ...

    @property
    def key(self) -> str | None: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def retries(self) -> int | None: ...


def journal_entry(task: DurableTask) -> NewTask:
    """What the journal records of ``task``: its pickled call and its options.

    :raises NotPicklable: if the call cannot be pickled
    :raises OffloadError: if its executor is an instance, which has no name to record
    """
    runs_on = task.runs_on
    if runs_on is not None and not isinstance(runs_on, str):
        raise OffloadError(
            f"durable task {task.name!r} runs on an executor given as an instance "
            f"({runs_on!r}); the journal records executors by name: register it with "
            "offload.register_executor(name, factory) and give the name"
        )
    try:
        payload = payload_of(task)
    except NotPicklable as exc:
        exc.add_note(
            "A durable task is journaled by pickle, to run later, maybe in another process: "
            "its function must be importable by module and name (not a lambda or a local "
            "function) and its arguments must pickle"
        )
        raise
    return NewTask(task.id, task.name, payload, task.key, runs_on, task.timeout, task.retries)


class DurableList:
    """The journal side of one durable task list: writes its tasks as they join it, and
    forgets them if the list is dropped unrun.

    :param owner: the task list; when it is garbage collected before it was handed to the
        runtime (its endpoint raised), its journaled tasks are forgotten, with a warning
    :param rewriter: what writes a task of the list anew when its options change, weakly
        (a ``WeakMethod``): the list holds its tasks, and must stay collectable
    :raises OffloadError: if ``runtime`` has no journal, or takes no detached lists now
    """

    def __init__(
        self, owner: object, runtime: Runtime, on_error: OnError | None,
        concurrency: Concurrency | None, rewriter: Callable[[], Callable[[Any], None] | None],
    ) -> None:  # fmt: skip
        service = runtime.journal
        if not isinstance(service, DurableService):
            raise OffloadError(
                "a durable task list needs a journal to be written to, and the runtime has "
                "none: set OffloadConfig(journal='tasks.journal', ...) and serve the app with "
                "lifespan=offload.lifespan(config) (or enter `async with offload.Runtime(config)`)"
            )
        runtime.check_detach("durable=True")
        self.service = service
        self.id = new_id()
        self.on_error, self.concurrency = on_error, concurrency
        self.rewriter = rewriter
        # Filled as tasks are journaled; the finalizer reads them when the list is dropped.
        self._positions: dict[str, int] = {}  # by task id
        self._names: list[str] = []
        self._members: weakref.WeakValueDictionary[str, DurableTask] = weakref.WeakValueDictionary()
        self._unrun = weakref.finalize(owner, service.dropped, self._positions, self._names)
        self._unrun.atexit = False  # at exit, a list not yet run stays for the next runtime

    def write(self, tasks: Sequence[tuple[int, DurableTask]]) -> dict[str, str]:
        """Journal ``tasks`` (each with its position in the list), or write them anew.

        :return: for each task whose key is already pending or running, that task's id: such a
            task is not journaled, and must leave the list
        :raises NotPicklable: if a task cannot be pickled
        :raises OffloadError: if the journal cannot be written
        """
        journaled = [(position, journal_entry(task)) for position, task in tasks]
        duplicates = self.service.record(self.id, self.on_error, self.concurrency, journaled)
        for position, task in tasks:
            if task.id not in duplicates and task.id not in self._positions:
                self._positions[task.id] = position
                self._members[task.id] = task
                self._names.append(task.name)
                _unscheduled[task.id] = self
        return duplicates

    def rewrite(self, task: DurableTask) -> None:
        """Write ``task`` anew: its options changed before the list was handed over. A task
        that only took the id of one of the list's (its key was taken) is not the list's."""
        rewrite = self.rewriter()
        if rewrite is not None and self._members.get(task.id) is task:
            rewrite(task)

    def position(self, task_id: str) -> int:
        """Where the task with this id is in the list."""
        return self._positions[task_id]

    def handed_over(self) -> None:
        """The list was handed to the runtime: its tasks run (and leave the journal) there,
        and a task changed from now on is not written again."""
        self._unrun.detach()
        for task_id in self._positions:
            _unscheduled.pop(task_id, None)


#: The durable lists not yet handed over, by the ids of their journaled tasks: where a
#: task's ``set(...)`` finds the list that writes it anew. Weak: a dropped list leaves.
_unscheduled: weakref.WeakValueDictionary[str, DurableList] = weakref.WeakValueDictionary()


def unscheduled_durable_list(task_id: str) -> DurableList | None:
    """Return the durable list that journaled the task with this id and has not been handed
    over yet, if there is one."""
    return _unscheduled.get(task_id)


class DurableService(TaskHooks):
    """The journal of one runtime: see the module's docstring.

    :raises JournalError: from :meth:`start`, if the journal cannot be used
    """

    def __init__(self, runtime: Runtime, path: str) -> None:
        self.runtime = runtime
        # Two connections: the thread's (leases, outcomes, takeovers), and the event loop's
        # (new tasks). Neither checkpoints as it commits: the thread does, outside any write
        # transaction, so that the loop never waits for one.
        write_lock = threading.Lock()
        self.journal = Journal(path, busy_timeout=BUSY, checkpoints=False, write_lock=write_lock)
        self._writer = Journal(path, busy_timeout=BUSY, checkpoints=False, write_lock=write_lock)
        self._written = 0  # rows written since the last checkpoint
        self.owner = new_id()
        self._journaled: set[str] = set()  # the ids of this runtime's durable tasks
        # What the journal must learn, in order, for the thread to write. Appended without a
        # lock: a lock shared with the thread would have the event loop wait for the GIL,
        # for up to a switch interval, each time the thread held it.
        self._outcomes: deque[Outcome] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: EventLoopToken | None = None
        self._kept: set[str] = set()  # cut short by a stop from outside: they run again
        self._backlog: list[TakenList] = []

    # Lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, take over what gone runtimes left, and start the thread."""
        self._token = current_token()
        try:
            await anyio.to_thread.run_sync(self._open)
            taken = await anyio.to_thread.run_sync(self.journal.take_over, self.owner)
        except BaseException:
            self._writer.close()
            self.journal.close()
            raise
        self.runtime.add_hooks(self)
        self._schedule(taken)
        self._thread = threading.Thread(target=self._sweep, name="offload-journal", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        self.journal.open()
        self._writer.open()
        self.journal.register(self.owner, LEASE)

    async def aclose(self) -> None:
        """Record what ended, and let the next runtime take what did not at once."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join)
        self.runtime.remove_hooks(self)
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        try:
            self._flush()
            self.journal.release(self.owner)
        finally:
            self._writer.close()
            self.journal.close()

    # Recording durable lists (on the event loop) ----------------------------------------------

    def record(
        self, list_id: str, on_error: str | None, concurrency: str | None,
        tasks: Sequence[tuple[int, NewTask]],
    ) -> dict[str, str]:  # fmt: skip
        """Write tasks of a durable list to the journal, now, on a connection of the event
        loop's (which leaves the journal's checkpoints to the thread's).

        :return: for each task whose key is already pending or running, that task's id
        :raises OffloadError: if the journal cannot be written
        """
        try:
            duplicates = self._writer.add(list_id, on_error, concurrency, tasks, self.owner)
        except OffloadError:
            raise
        except Exception as exc:  # sqlite3's: a full disk, a lost file, a lock held too long
            raise OffloadError(
                f"durable tasks {[task.name for _, task in tasks]!r} could not be written to "
                f"journal {str(self.journal.path)!r}: {type(exc).__name__}: {exc}; they are not "
                "scheduled (answer 503 so the client retries)"
            ) from exc
        for _, task in tasks:
            if task.id in duplicates:
                self._journaled.discard(task.id)
            else:
                self._journaled.add(task.id)
        return duplicates

    def dropped(self, task_ids: Iterable[str], names: list[str]) -> None:
        """A durable list was dropped without being run (its endpoint raised, say): forget
        its tasks, as the request that made it is gone. Called from any thread."""
        live = [task_id for task_id in task_ids if task_id in self._journaled]
        if not live:
            return
        logger.warning(
            "Durable background tasks not run, since their list was dropped before it was "
            "run (did the endpoint raise?): %s", ", ".join(names),
        )  # fmt: skip
        self._journaled.difference_update(live)
        self._outcomes.extend((task_id, None) for task_id in live)
        self._wake.set()

    # Hooks: following the tasks as they run ---------------------------------------------------

    def started(self, task: Call, executor: str, attempt: int) -> None:
        if task.id in self._journaled:
            self._outcomes.append((task.id, attempt))
            if not self._wake.is_set():
                self._wake.set()

    def cut_short(self, task: Call) -> None:
        if task.id in self._journaled:
            self._kept.add(task.id)

    def ended(self, report: TaskReport) -> None:
        task_id = report.id
        if task_id not in self._journaled:
            return
        status = report.status
        if task_id in self._kept:  # cut short by a shutdown: the next runtime runs it
            self._kept.discard(task_id)
            self._journaled.discard(task_id)
            return
        self._journaled.discard(task_id)
        if status in ("failed", "timed_out"):
            error = report.error
            kind = "TaskTimeout" if error is None else type(error).__name__
            self._outcomes.append((task_id, (kind, report.attempts)))
        else:  # succeeded; or cancelled by offload.cancel(), skipped by its list's policy
            self._outcomes.append((task_id, None))
        if not self._wake.is_set():
            self._wake.set()

    # The thread: leases, outcomes, takeovers --------------------------------------------------

    def _sweep(self) -> None:
        next_sweep = time.monotonic() + SWEEP
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_sweep - time.monotonic()))
            self._stop.wait(BATCH)  # let outcomes gather: fewer, larger transactions
            self._wake.clear()
            try:
                self._flush()
                if time.monotonic() >= next_sweep and not self._stop.is_set():
                    next_sweep = time.monotonic() + SWEEP
                    self.journal.checkpoint()
                    if not self.journal.renew(self.owner, LEASE):
                        logger.warning(
                            "The journal %r took this process for gone (its lease of %gs ran "
                            "out: was it stalled?) and let others take over its tasks; those "
                            "it still runs may run twice", str(self.journal.path), LEASE,
                        )  # fmt: skip
                    taken = self.journal.take_over(self.owner)
                    if taken or self._backlog:
                        token = self._token
                        assert token is not None
                        call_soon(token, self._schedule, taken)
            except Exception:  # a locked or lost file: try again at the next sweep
                logger.exception("The journal %r could not be updated", str(self.journal.path))

    def _flush(self) -> None:
        """Write the outcomes gathered so far, in short transactions, so that the event
        loop's writes never wait long for the journal, nor for the GIL."""
        outcomes = self._outcomes
        while outcomes:
            # Read, then forgotten once written: if the write fails (a lock held too long, a
            # full disk), they are written at the next sweep, not lost.
            chunk = list(itertools.islice(outcomes, CHUNK))
            started: dict[str, int] = {}
            ended: list[str] = []
            failed: dict[str, tuple[str, int]] = {}
            for task_id, outcome in chunk:
                if isinstance(outcome, int):
                    started[task_id] = outcome
                    continue
                started.pop(task_id, None)
                if outcome is None:
                    ended.append(task_id)
                else:
                    failed[task_id] = outcome
            self.journal.record_outcomes(started, ended, failed)
            for _ in chunk:  # only this thread takes from the left; the loop adds on the right
                outcomes.popleft()
            self._written += len(started) + len(ended) + len(failed)
            if self._written >= CHECKPOINT_ROWS:
                self._written = 0
                self.journal.checkpoint()
            # Let the event loop, which may be waiting to write, take the journal's lock
            # (and the GIL) before this thread takes them again.
            time.sleep(0.0002)

    # Running what was taken over (on the event loop) ------------------------------------------

    def _schedule(self, taken: list[tuple[Entry, bytes]]) -> None:
        lists: dict[str, list[tuple[Entry, bytes]]] = {}
        for entry, payload in taken:
            lists.setdefault(entry.list_id, []).append((entry, payload))
        pending = [*self._backlog, *(self._rebuild(entries) for entries in lists.values())]
        self._backlog = [taken for taken in pending if taken.tasks and not self._submit(taken)]

    def _rebuild(self, entries: list[tuple[Entry, bytes]]) -> TakenList:
        first = entries[0][0]
        options = cast(
            "tuple[OnError | None, Concurrency | None]", (first.on_error, first.concurrency)
        )
        taken = TakenList([], *options)
        for entry, payload in entries:
            try:
                taken.tasks.append(JournaledTask(entry, payload))
            except Exception as exc:  # the function moved, a module is gone: it cannot run
                logger.error(
                    "Durable task %r (%s) taken over from the journal cannot be loaded, so it "
                    "is kept as failed: %s: %s", entry.name, entry.id, type(exc).__name__, exc,
                )  # fmt: skip
                self._outcomes.append((entry.id, (type(exc).__name__, entry.attempts)))
                self._wake.set()
                continue
            self._journaled.add(entry.id)
        return taken

    def _submit(self, taken: TakenList) -> bool:
        """Run a list taken over; ``False`` if the runtime is full (it is tried again)."""
        runtime, tasks = self.runtime, taken.tasks
        try:
            ticket = runtime.reserve(tasks)
        except OffloadError:  # full (Overloaded), or shutting down: the tasks stay journaled
            return False
        try:
            run = TaskRun(tasks, runtime, on_error=taken.on_error, concurrency=taken.concurrency)
            runtime.submit(ticket, run, tasks)
        except Exception as exc:  # an executor this process lacks: the list cannot run here
            ticket.end()
            logger.error(
                "Durable background task(s) taken over from the journal cannot run here, so "
                "they are kept as failed: %s: %s: %s",
                ", ".join(task.name for task in tasks), type(exc).__name__, exc,
            )  # fmt: skip
            for task in tasks:
                self._journaled.discard(task.id)
                self._outcomes.append((task.id, (type(exc).__name__, 0)))
            self._wake.set()
            return True
        logger.info(
            "Took over %d durable background task(s) from the journal: %s",
            len(tasks), ", ".join(task.name for task in tasks),
        )  # fmt: skip
        return True


class TakenList(NamedTuple):
    """A durable list taken over, as it was journaled."""

    tasks: list[JournaledTask]
    on_error: OnError | None
    concurrency: Concurrency | None


def _make_service(runtime: Runtime, path: str) -> DurableService:
    return DurableService(runtime, path)


set_journal_service(_make_service)
