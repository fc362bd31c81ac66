"""Slot: one worker process, in a pool of its own so that it can die or be killed alone."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

import anyio

from .._carrier import Carrier
from .._exceptions import OffloadError
from . import _worker
from ._fork_server import temporary_directory
from ._lifeline import lifeline
from ._logs import LogForwarder, forwarded_level
from ._pickling import Outcome


class Slot:
    """One place a process task runs: a :class:`ProcessPoolExecutor` with a single worker.

    A plain pool breaks as a whole when one worker dies, failing every pending task; a
    pool per worker breaks alone, so a crash, a kill on timeout or a recycle touches no
    other task. Every method but :meth:`submit` blocks: call them from a worker thread.

    :param context: the multiprocessing context that starts the worker
    :ivar tasks: how many tasks the current worker has run
    :ivar closing: set when the executor closes; a closing slot starts no new worker
    """

    def __init__(self, context: BaseContext) -> None:
        self._context = context
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._process: BaseProcess | None = None
        self._logs: LogForwarder | None = None
        self.pid: int | None = None
        self.exitcode: int | None = None
        self.tasks = 0
        self.closing = False

    @property
    def alive(self) -> bool:
        """Whether the slot has a worker (it may have died since)."""
        return self._pool is not None

    def spawn(self) -> None:
        """Start a worker and wait until it is ready."""
        self.wait_ready(self.launch())

    def launch(self) -> Future[int]:
        """Start a worker; the returned future gives its pid once it is ready for tasks.

        :raises anyio.ClosedResourceError: if the slot's executor has closed
        """
        with self._lock:
            if self.closing:
                raise anyio.ClosedResourceError
            reader, writer = self._context.Pipe(duplex=False)
            try:
                pool = ProcessPoolExecutor(
                    1,
                    mp_context=self._context,
                    initializer=_worker.initialize,
                    initargs=(
                        writer,
                        forwarded_level(),
                        lifeline(),
                        temporary_directory(self._context),
                    ),
                )
                try:
                    ready = pool.submit(os.getpid)  # starts the worker process now
                except BaseException:
                    pool.shutdown(wait=True)
                    raise
            except BaseException:
                reader.close()
                raise
            finally:
                # The worker has its own copy; the parent's would keep the pipe open forever.
                writer.close()
            self._pool, self._process = pool, _only_process(pool)
            self.pid = self._process.pid if self._process is not None else None
            self._logs = LogForwarder(reader, f"offload-worker-logs-{self.pid}")
            self.tasks = 0
            self.exitcode = None
            return ready

    def wait_ready(self, ready: Future[int]) -> None:
        """Wait for a worker :meth:`launch` started; retire it if it failed to start."""
        try:
            self.pid = ready.result()
        except BaseException as exc:
            self.retire()
            if not isinstance(exc, Exception):
                raise
            raise OffloadError(
                f"a worker process failed to start ({type(exc).__name__}: {exc}); "
                f"its exit code was {self.exitcode}, see its output on stderr"
            ) from exc

    def submit(self, payload: bytes, task_id: str, carrier: Carrier) -> Future[Outcome]:
        """Send a pickled call to the worker.

        :param task_id: the task's id, which its progress comes back tagged with
        :param carrier: the trace context the task runs in, in the worker
        :raises BrokenProcessPool: if the worker has died since its last task
        """
        assert self._pool is not None, "spawn the slot's worker first"
        return self._pool.submit(_worker.run_payload, payload, task_id, carrier)

    def kill(self) -> None:
        """Kill the worker and every process its task started, at once (SIGKILL): the only
        way to stop code that does not yield."""
        with self._lock:
            if self._pool is not None:
                self._kill_group()

    def retire(self) -> None:
        """Shut the worker down (or collect it, if it died) and wait until it is gone, with
        every process its tasks started.

        Sets :attr:`exitcode`. The slot then has no worker until the next :meth:`spawn`.
        """
        with self._lock:
            pool, process, logs = self._pool, self._process, self._logs
            if pool is None:
                return
            self._pool = self._process = self._logs = None
            if process is not None and not process.is_alive():
                # Crashed or killed: what its task started may still hold the pool's pipes.
                self._kill_group()
            # A live worker finishes its current task first; a dead one is only collected.
            pool.shutdown(wait=True, cancel_futures=True)
            if process is not None:
                process.join()
                self.exitcode = process.exitcode
            self._kill_group()  # what its tasks left running
            if logs is not None:
                logs.close()

    def _kill_group(self) -> None:
        # The worker leads a process group of its own (see _worker.initialize), which the
        # kernel keeps, under the worker's pid, while any of its members lives.
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._process is not None:  # not yet in its group, if it was still starting
            self._process.kill()


def _only_process(pool: ProcessPoolExecutor) -> BaseProcess | None:
    # ProcessPoolExecutor keeps its workers in a private dict, filled by the first submit().
    # The Process object is the only way to learn a dead worker's exit code: with forkserver
    # the worker is the fork server's child, not ours, so os.waitpid cannot see it.
    processes = getattr(pool, "_processes", None) or {}
    return next(iter(processes.values()), None)
