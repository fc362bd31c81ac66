"""ProcessExecutor: run tasks in worker processes that can crash, time out and be recycled alone."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread

from .._callables import module_name
from .._carrier import current_carrier
from .._checks import check_choice, check_int
from .._config import available_cpus, default_start_method
from .._exceptions import OffloadError, WorkerCrashed, killed_by
from .._hooks import worker_restarted
from .._progress import open_route
from . import _fork_server as fork_server
from ._base import Executor
from ._can_start import check_can_start_workers, check_main_guard
from ._futures import wait_future
from ._pickling import payload_of, unpack_outcome
from ._slot import Slot
from ._slot_queue import SlotQueue

if TYPE_CHECKING:
    from .._call import Call
    from .._config import OffloadConfig


class ProcessExecutor(Executor):
    """Run tasks in worker processes, for CPU-heavy work, on top of ProcessPoolExecutor.

    Each worker lives in a single-worker :class:`~concurrent.futures.ProcessPoolExecutor`
    of its own (a *slot*), and a task borrows a free slot for its run. So:

    - a task's call is pickled by :meth:`prepare`, as soon as the task is bound to this
      executor, and those bytes are what the worker gets;
    - a worker that dies (segfault, ``os._exit``, out-of-memory kill) fails only its own task,
      with :exc:`WorkerCrashed`; its slot gets a new worker for the next task;
    - a timeout (any cancellation) kills the worker of that task at once and replaces it;
    - ``max_tasks_per_child`` recycles a worker after that many tasks, without CPython's own
      recycling (which can hang on Python 3.11 to 3.13);
    - a coroutine function runs in the worker with :func:`asyncio.run`; workers share the
      parent's stdout and stderr, and their log records go to the parent's loggers.

    Workers start with ``forkserver`` on Linux and ``spawn`` elsewhere. The fork server
    imports ``preload`` and the modules of the task functions this executor has seen once,
    so new workers start without importing them; it starts once per parent process, so
    modules first seen later are imported by each new worker instead.

    :param workers: how many tasks may run at once, each in its own process; by default
        the CPUs this process may use
    :param start_method: the multiprocessing start method
    :param preload: modules the fork server imports before forking workers
    :param max_tasks_per_child: replace a worker after it has run this many tasks
    :raises ConfigError: if a value is out of range
    """

    name = "process"

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str | None = None,
        preload: Iterable[str] = (),
        max_tasks_per_child: int | None = None,
    ) -> None:
        self.workers = available_cpus() if workers is None else workers
        self.start_method = default_start_method() if start_method is None else start_method
        self.preload = tuple(preload)
        self.max_tasks_per_child = max_tasks_per_child
        check_int("workers", self.workers)
        check_choice("start_method", self.start_method, multiprocessing.get_all_start_methods())
        check_int("max_tasks_per_child", max_tasks_per_child, optional=True)
        self._modules: dict[str, None] = {}  # an ordered set: the task modules seen so far
        self._lifecycle = threading.Lock()
        self._slots: list[Slot] = []
        self._queue: SlotQueue[Slot] | None = None

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        return cls(
            config.process_workers,
            start_method=config.start_method,
            preload=config.preload,
            max_tasks_per_child=config.max_tasks_per_child,
        )

    def prepare(self, task: Call) -> None:
        """Pickle the task's call now, so that an unpicklable one fails before it is queued.

        Until the workers have started, check as well that they could: a script whose
        top-level code binds a process task without an ``if __name__ == "__main__":`` guard
        would run again in each worker.

        :raises OffloadError: if workers would run the main module's top-level code again
        :raises NotPicklable: naming the task and the part of the call that does not pickle
        """
        if self._queue is None:
            check_main_guard(self.start_method)
        payload_of(task)
        self._modules.setdefault(module_name(task.func), None)

    async def start(self) -> None:
        """Start every worker and wait until each is ready for a task.

        Safe to call again, and from several tasks at once: the workers start once.

        :raises OffloadError: if this process cannot start workers (a daemonic process, or
            a main module without an ``if __name__ == "__main__":`` guard), naming the fix
        """
        if self._queue is None:
            # Here rather than in the thread: its frames would only lengthen the traceback.
            check_can_start_workers(self.start_method)
            await anyio.to_thread.run_sync(self._start)

    async def aclose(self) -> None:
        """Stop every worker and wait until each has exited.

        Tasks still waiting for a worker fail with :exc:`OffloadError`; tasks still running
        (a runtime closes its executors only after draining them) have their workers killed.
        :meth:`start` works again afterwards.
        """
        if self._queue is not None:
            await anyio.to_thread.run_sync(self._close)

    async def run(self, task: Call) -> Any:
        """Run ``task`` in a worker process and return its result.

        Cancelling the run (a timeout) kills the worker, so the work really stops; the slot
        gets a new worker before its next task.

        :raises WorkerCrashed: if the worker died while running the task
        :raises NotPicklable: if the task was not prepared and cannot be pickled
        :raises OffloadError: if the result or exception cannot be sent back, or the
            executor closed before or while the task ran
        """
        if task.payload is None:  # not prepared: bound to this executor by the config
            self.prepare(task)
        payload = payload_of(task)
        await self.start()
        queue = self._queue
        if queue is None:  # closed between start() and here
            raise _closed_before(task)
        try:
            slot = await queue.acquire()
        except anyio.ClosedResourceError:
            raise _closed_before(task) from None
        try:
            with open_route(task.id):  # the task's progress, while it runs, to its run
                return await self._run_in(slot, task, payload)
        except anyio.ClosedResourceError:  # closed while its worker was being replaced
            raise _closed_before(task) from None
        finally:
            if not queue.release(slot):  # closed meanwhile: this slot's worker goes too
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(slot.retire)

    async def _run_in(self, slot: Slot, task: Call, payload: bytes) -> Any:
        if not slot.alive:  # crashed, killed or recycled after its last task
            await anyio.to_thread.run_sync(slot.spawn)
        carrier = current_carrier()  # the task's span, when tracing is installed
        try:
            future = slot.submit(payload, task.id, carrier)
        except BrokenProcessPool:  # the worker died while idle: the task never reached it
            await anyio.to_thread.run_sync(_respawn, slot)
            worker_restarted(self.name, "crash")
            future = slot.submit(payload, task.id, carrier)
        try:
            outcome = await wait_future(future)
        except anyio.get_cancelled_exc_class():
            # Still queued: cancel it. Done: nothing to stop. Running: kill the worker.
            if not future.cancel() and not future.done():
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_kill, slot)
                worker_restarted(self.name, "timeout")
            raise
        except BrokenProcessPool:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(slot.retire)
            if not slot.closing:
                worker_restarted(self.name, "crash")
            raise self._crashed(slot, task) from None
        slot.tasks += 1
        if self.max_tasks_per_child is not None and slot.tasks >= self.max_tasks_per_child:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(slot.retire)
            worker_restarted(self.name, "recycle")
        return unpack_outcome(outcome, task.name)

    def _crashed(self, slot: Slot, task: Call) -> OffloadError:
        if slot.closing:
            return OffloadError(
                f"the process executor closed while task {task.name!r} ran; "
                f"its worker process {slot.pid} was stopped"
            )
        return WorkerCrashed(
            f"worker process {slot.pid} died while running task {task.name!r}: "
            f"{_describe_exit(slot.exitcode)}",
            exitcode=slot.exitcode,
        )

    def _start(self) -> None:
        with self._lifecycle:
            if self._queue is not None:
                return
            context = self._context()
            slots = [Slot(context) for _ in range(self.workers)]
            try:
                # Launch every worker before waiting for any, so they start in parallel.
                for slot, ready in [(slot, slot.launch()) for slot in slots]:
                    slot.wait_ready(ready)
            except BaseException:
                for slot in slots:
                    slot.retire()
                raise
            self._slots, self._queue = slots, SlotQueue(slots)

    def _close(self) -> None:
        with self._lifecycle:
            queue, slots = self._queue, self._slots
            if queue is None:
                return
            self._queue, self._slots = None, []
            free = queue.close()
            for slot in slots:
                slot.closing = True  # a task that holds it can no longer start a worker
                if slot not in free:
                    slot.kill()
            for slot in slots:
                slot.retire()
            if self.start_method == "forkserver":
                # Started again, with the modules seen by then preloaded, by the next start.
                fork_server.stop()

    def _context(self) -> BaseContext:
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # "__main__" is multiprocessing's own default; the worker module saves every
            # worker the import of offload. Only takes effect if the fork server is not
            # running yet: there is one per parent process.
            modules = ["__main__", __name__.rpartition(".")[0] + "._worker"]
            context.set_forkserver_preload(
                list(dict.fromkeys([*modules, *self.preload, *self._modules.copy()]))
            )
        return context

    def __repr__(self) -> str:
        return f"<ProcessExecutor {self.name!r} workers={self.workers}>"


def _closed_before(task: Call) -> OffloadError:
    return OffloadError(f"the process executor closed before task {task.name!r} got a worker")


def _kill(slot: Slot) -> None:
    slot.kill()
    slot.retire()


def _respawn(slot: Slot) -> None:
    slot.retire()
    slot.spawn()


def _describe_exit(exitcode: int | None) -> str:
    """Say how a worker process ended, from its exit code (negative: killed by a signal)."""
    if exitcode is None:
        return "its exit code is unknown"
    if exitcode >= 0:
        return f"it exited with code {exitcode} (os._exit() or a fatal error in native code)"
    killer = killed_by(exitcode)
    name = f"signal {-exitcode}" if killer is None else killer.name
    hint = {
        "SIGKILL": "; SIGKILL often means the system ran out of memory and killed it",
        "SIGSEGV": "; a crash in native code (a C extension or ctypes)",
    }.get(name, "")
    return f"it was killed by {name}{hint}"
