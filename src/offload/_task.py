"""BackgroundTask and BackgroundTasks: drop-ins for Starlette's, with per-task options.

A task's executor is chosen once, when the task joins a list (or gets its own executor), and
checked there (a process executor pickles it), while the endpoint still runs. Running a list
then only looks each chosen executor up in the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, Self, TypeAlias, get_args
from weakref import WeakMethod

from ._call import call_sync
from ._callables import callable_name, is_async_callable
from ._checks import check_callable, check_choice
from ._config import Concurrency, OnError
from ._default import current_runtime
from ._detached import Reservation
from ._durable import DurableList, unscheduled_durable_list
from ._exceptions import OffloadError
from ._foreign import runs_as_group, task_list_items, unpack
from ._ids import new_id
from ._options import (
    NO_OPTIONS,
    ExecutorSpec,
    TaskOptions,
    check_executor_spec,
    checked_choice,
    function_options,
    resolve_executor,
)
from ._report import TaskReport
from ._runner import TaskRun
from ._runtime import Runtime
from .executors._base import Executor

P = ParamSpec("P")


class BackgroundTask:
    """One call to make after the response is sent: ``func(*args, **kwargs)``.

    ``await task()`` runs it with the active runtime's config, as Starlette's does: a
    coroutine function on the event loop, anything else in a thread, unless an executor
    is chosen with :meth:`set`, ``@task_options`` or the config.

    :ivar runs_on: the executor the task itself, its function or its list chose (a name or
        an instance), once it has joined a list or been given one; ``None`` leaves the
        choice to the config of the runtime that runs it
    :raises TypeError: if ``func`` is not callable, or is a coroutine object
    """

    __slots__ = (
        "__weakref__",
        "_id",
        "_name",
        "args",
        "defaults",
        "func",
        "is_async",
        "kwargs",
        "list_choice",
        "options",
        "payload",
        "runs_on",
    )

    _id: str | None
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    is_async: bool
    options: TaskOptions
    defaults: TaskOptions
    payload: bytes | None
    list_choice: ExecutorSpec | None
    runs_on: ExecutorSpec | None
    _name: str | None

    # ``func`` may be given by keyword, as Starlette's and Lilya's tasks allow.
    def __init__(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        check_callable(func, "BackgroundTask()")
        _init(self, func, args, kwargs)

    def set(
        self,
        *,
        executor: ExecutorSpec | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        name: str | None = None,
        key: str | None = None,
    ) -> Self:
        """Set this task's own options in place and return the task, for chaining.

        Options left as ``None`` keep their current value. Setting an executor lets it
        check the task at once: a process executor pickles it here.

        ``timeout`` limits each attempt. ``retries`` runs a failed or timed-out task (a
        crashed worker included) again, up to that many times, after an exponential backoff
        with jitter (``retry_backoff``); its report's ``attempts`` says how many runs it
        took. Retry only idempotent tasks: an attempt may have done part of its work before
        it failed, and a thread task that timed out runs on beside the next attempt.

        ``key`` is a durable task's idempotency key: a durable list does not journal a task
        whose key is already pending or running there (the task then takes that one's id).

        :raises ExecutorNotFound: if ``executor`` is an unknown name
        :raises NotPicklable: if the executor must pickle the task and cannot
        :raises OffloadError: if the task is durable and the journal cannot be written
        """
        old, old_runs_on = self.options, self.runs_on
        # Set before the executor checks the task, so that its errors show the new name;
        # taken back if it refuses, so that a failed set changes nothing.
        self.options = TaskOptions(
            executor=old.executor if executor is None else executor,
            timeout=old.timeout if timeout is None else timeout,
            retries=old.retries if retries is None else retries,
            name=old.name if name is None else name,
            key=old.key if key is None else key,
        )
        self._name = None
        try:
            if executor is not None:
                _plan(self, current_runtime())
            # A durable list's task, not yet handed over: its journal entry follows.
            durable = None if self._id is None else unscheduled_durable_list(self._id)
            if durable is not None:
                durable.rewrite(self)
        except BaseException:
            self.options, self._name, self.runs_on = old, None, old_runs_on
            raise
        return self

    @property
    def id(self) -> str:
        """A unique string of 32 hex characters; the task's report and status have it too."""
        # Made when first read (most tasks never are), so a large list stays small.
        task_id = self._id
        if task_id is None:
            task_id = self._id = new_id()
        return task_id

    @property
    def name(self) -> str:
        """The name reports and logs show: the ``name`` option, else the function's name."""
        name = self._name
        if name is None:
            name = self._name = self.options.name or self.defaults.name or callable_name(self.func)
        return name

    @property
    def explicit_executor(self) -> ExecutorSpec | None:
        """The executor set on this task, else by its function's ``@task_options``."""
        executor = self.options.executor
        return self.defaults.executor if executor is None else executor

    @property
    def key(self) -> str | None:
        """The idempotency key set on this task (see :meth:`set`)."""
        return self.options.key

    @property
    def timeout(self) -> float | None:
        """The timeout set on this task, else by its function's ``@task_options``."""
        timeout = self.options.timeout
        return self.defaults.timeout if timeout is None else timeout

    @property
    def retries(self) -> int | None:
        """The retries set on this task, else by its function's ``@task_options``."""
        retries = self.options.retries
        return self.defaults.retries if retries is None else retries

    def call(self) -> Any:
        """Call a sync task's function and return its result, on the calling thread.

        :raises TypeError: if the function returned a coroutine, which would otherwise be
            dropped unrun (``add_task(lambda: notify(x))`` with an async ``notify``)
        """
        return call_sync(self)

    async def __call__(self) -> None:
        await TaskRun([self], current_runtime()).run()

    def __repr__(self) -> str:
        return f"<BackgroundTask {self.name!r}>"


def _new_task(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> BackgroundTask:
    """Make a task of a callable already checked."""
    task = BackgroundTask.__new__(BackgroundTask)
    _init(task, func, args, kwargs)
    return task


def _init(
    task: BackgroundTask, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    task._id = None
    task.func = func
    task.args = args
    task.kwargs = kwargs
    task.is_async = is_async_callable(func)
    task.options = NO_OPTIONS
    task.defaults = function_options(func)
    task._name = None  # cached: reports and logs read it often
    task.payload = None
    task.list_choice = None  # what the first list with an executor choice chose for it
    task.runs_on = None
    if task.defaults.executor is not None:
        _plan(task, current_runtime())


def _plan(task: BackgroundTask, runtime: Runtime) -> None:
    """Choose the executor of ``task`` and let it check the task now, while the endpoint runs.

    What the task, its function or its list chose is kept in ``runs_on``; the config's
    choice is left to the runtime that runs the task, but checked against this one's.

    :raises ExecutorNotFound: if the executor chosen is an unknown name
    :raises NotPicklable: if it must pickle the task and cannot
    """
    explicit, chosen = task.explicit_executor, task.list_choice
    if explicit is None and chosen is None:
        runtime.default_executor(task.is_async).prepare(task)
        task.runs_on = None
        return
    spec = resolve_executor(explicit, chosen, runtime.config.executor, task.is_async)
    runtime.executor(spec).prepare(task)
    task.runs_on = spec


#: A list's executor choice: a name, an instance, or a chooser called with each task
#: (a chooser's ``None`` leaves the choice to the config).
Chooser: TypeAlias = Callable[[BackgroundTask], ExecutorSpec | None]
ExecutorChoice: TypeAlias = ExecutorSpec | Chooser


class BackgroundTasks:
    """An ordered list of background tasks, run one after another (or together) after the
    response is sent. A drop-in for Starlette's and FastAPI's ``BackgroundTasks``.

    :param tasks: offload tasks, Starlette/FastAPI-style tasks (anything with ``func``,
        ``args``, ``kwargs``), their ``BackgroundTasks`` (anything with ``tasks``), or
        zero-argument callables
    :param executor: the executor of tasks that choose none themselves: a name, an
        :class:`Executor`, or a chooser called once with each task as it joins the list.
        A task that came from another list keeps what that list chose for it.
    :param on_error: the error policy of this list; the config's when ``None``
    :param concurrency: ``"sequential"`` or ``"group"``; the config's when ``None``
    :param detach: hand the list to the running :class:`~offload.Runtime` when awaited,
        instead of running it in the caller (the request); the config's when ``None``.
        See :attr:`detach`.
    :raises ConfigError: if ``on_error`` or ``concurrency`` is not a known value
    :raises ExecutorNotFound: if ``executor`` is an unknown name
    :raises OffloadError: if the list is detached and no runtime is entered, or the
        runtime is shutting down
    :raises Overloaded: if the list is detached, has tasks, and the runtime already has
        ``max_pending`` detached lists
    """

    def __init__(
        self,
        tasks: Iterable[object] | None = None,
        *,
        executor: ExecutorChoice | None = None,
        on_error: OnError | None = None,
        concurrency: Concurrency | None = None,
        detach: bool | None = None,
        durable: bool | None = None,
    ) -> None:
        if on_error is not None:
            check_choice("on_error", on_error, get_args(OnError))
        if concurrency is not None:
            check_choice("concurrency", concurrency, get_args(Concurrency))
        if not (executor is None or isinstance(executor, str | Executor) or callable(executor)):
            raise TypeError(
                "executor must be a name, an offload.Executor or a chooser callable, "
                f"got a {type(executor).__name__}"
            )
        if isinstance(executor, str):
            check_executor_spec(executor)
        self.executor = executor
        self.on_error = on_error
        self.concurrency = concurrency
        self.tasks: list[BackgroundTask] = []
        self._last_run: TaskRun | None = None
        self._reservation: Reservation[Runtime] | None = None
        self._detached = False
        self._joined = 0  # the tasks that joined through this list; others were appended
        self._durable: DurableList | None = None
        runtime = current_runtime()
        if durable is None:
            durable = runtime.config.durable
        elif not isinstance(durable, bool):
            raise TypeError(f"durable must be True or False, got {durable!r}")
        if durable:
            if detach is False:
                raise OffloadError("a durable task list is detached: drop detach=False")
            rewriter = WeakMethod(self._rewrite)
            self._durable = DurableList(self, runtime, on_error, concurrency, rewriter)
            self._detached = True
        elif detach is None:
            if runtime.config.detach:
                runtime.check_detach("the config's detach=True")
                self._detached = True
        else:
            self.detach = detach
        if tasks:
            groups: list[bool] = []
            for task in _as_tasks(tasks, groups):
                self._append(task, runtime)
            if concurrency is None and any(groups):  # another framework's list asked for it
                self.concurrency = "group"

    @property
    def detach(self) -> bool:
        """Whether the list is detached: handed, when awaited, to the running runtime.

        A detached list's ``await tasks()`` returns at once, so the server completes the
        request; the runtime runs the list on its own event loop, with the list's order
        and error policy, where no client disconnect or request cancellation reaches it.
        What the policy would raise is logged instead, since no caller is left.
        ``reports`` fills in once the list has ended.

        From its first task until it ends, the list counts toward ``max_pending``; settle
        it while the endpoint runs (set this, or pass ``detach=``) so that a full runtime
        raises :exc:`~offload.Overloaded` there, where the app can answer 503.

        :raises OffloadError: when set to ``True`` with no runtime entered, or the runtime
            shutting down
        :raises Overloaded: when set to ``True`` on a list with tasks and a full runtime
        """
        return self._detached

    @detach.setter
    def detach(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"detach must be True or False, got {value!r}")
        if not value and self._durable is not None:
            raise OffloadError("a durable task list is detached: it cannot be set to detach=False")
        if value and not self._detached:
            runtime = current_runtime()
            runtime.check_detach()
            if self.tasks:
                self._reserve(runtime)
        elif not value:
            self._drop_reservation()
        self._detached = value

    @property
    def durable(self) -> bool:
        """Whether the list is durable: each task is written to the runtime's journal as it
        joins the list, before the endpoint returns, and runs at least once, even if the
        server dies first (another server process on the journal, or the next one, takes it
        over). A durable list is detached. Its tasks must be idempotent."""
        return self._durable is not None

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> BackgroundTask:
        """Append ``func(*args, **kwargs)`` and return the new task (for ``.set(...)``).

        :raises TypeError: if ``func`` is not callable, or is a coroutine object
        :raises NotPicklable: if the task goes to a process executor and cannot be pickled,
            or the list is durable and it cannot be pickled
        :raises OffloadError: if the list is durable and the journal cannot be written
        """
        check_callable(func, "add_task()")
        task = _new_task(func, args, kwargs)
        self._append(task, current_runtime())
        return task

    async def __call__(self) -> None:
        if self._joined != len(self.tasks):
            self._join_appended()
        if self._detached:
            self._hand_over()
            return
        run = TaskRun(
            self.tasks, current_runtime(), on_error=self.on_error, concurrency=self.concurrency
        )
        self._last_run = run
        await run.run()

    @property
    def reports(self) -> list[TaskReport]:
        """One :class:`TaskReport` per task, in task order, once the last run has ended
        (a detached list's, once the runtime has run it); empty before."""
        run = self._last_run
        return [] if run is None else run.reports

    def _append(self, task: BackgroundTask, runtime: Runtime) -> None:
        self._join(task, runtime)
        if self._detached and self._reservation is None:
            self._reserve(runtime)  # first: a full runtime refuses it before it is journaled
        if self._durable is not None:
            journaled = False
            try:
                journaled = not self._journal([(len(self.tasks), task)])
            finally:  # refused, or its key is pending already (the task is that one)
                if not journaled and not self.tasks:
                    self._drop_reservation()
            if not journaled:
                return
        self.tasks.append(task)
        self._joined += 1

    def _join_appended(self) -> None:
        # Tasks appended to ``tasks`` directly, as Starlette's lists allow, join it now.
        runtime = current_runtime()
        appended = self.tasks[self._joined :]
        for task in appended:
            self._join(task, runtime)
        if self._durable is not None:
            first = self._joined
            duplicates = self._journal(list(enumerate(appended, first)))
            self.tasks = [task for task in self.tasks if task not in duplicates]
        self._joined = len(self.tasks)

    def _journal(self, tasks: list[tuple[int, BackgroundTask]]) -> list[BackgroundTask]:
        """Write durable tasks to the journal; return those it did not take, as their key is
        pending already (each then takes the id of that one)."""
        durable = self._durable
        assert durable is not None
        duplicates = durable.write(tasks)
        left = []
        for _, task in tasks:
            existing = duplicates.get(task.id)
            if existing is not None:
                task._id = existing
                left.append(task)
        return left

    def _rewrite(self, task: BackgroundTask) -> None:
        """Journal ``task`` anew: its options changed (``task.set(...)``)."""
        durable = self._durable
        assert durable is not None
        if self._journal([(durable.position(task.id), task)]):
            self.tasks.remove(task)
            self._joined -= 1
            if not self.tasks:  # nothing left to run: its place in the runtime is free
                self._drop_reservation()

    def _join(self, task: BackgroundTask, runtime: Runtime) -> None:
        """Apply this list's executor choice to ``task``, and plan it."""
        choice = self.executor
        explicit = task.explicit_executor
        if explicit is None and task.list_choice is None and choice is not None:
            if not isinstance(choice, str | Executor):
                choice = checked_choice(choice, task, task.name)
            task.list_choice = choice
        if explicit is None:
            _plan(task, runtime)  # else it was planned when its executor was set

    def _reserve(self, runtime: Runtime) -> None:
        self._reservation = Reservation(self, runtime, runtime.reserve(self.tasks))

    def _take_reservation(self) -> Reservation[Runtime] | None:
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            reservation.take()
        return reservation

    def _drop_reservation(self) -> None:
        """Give up the list's place in the runtime: it no longer runs there as it is."""
        reservation = self._take_reservation()
        if reservation is not None:
            reservation.ticket.end()

    def _hand_over(self) -> None:
        if self._durable is not None:
            self._durable.handed_over()
        reservation = self._take_reservation()
        if not self.tasks:  # emptied since it was scheduled: nothing to run
            if reservation is not None:
                reservation.ticket.end()
            return
        if reservation is None:  # awaited again: schedule it again
            runtime = current_runtime()
            ticket = runtime.reserve(self.tasks)
        else:
            runtime, ticket = reservation.runtime, reservation.ticket
        try:
            run = TaskRun(self.tasks, runtime, on_error=self.on_error, concurrency=self.concurrency)
        except BaseException:
            ticket.end()
            raise
        if runtime.intercept(run):  # a test recorder takes it instead
            ticket.end()
            return

        def ended(_: object) -> None:
            self._last_run = run

        ticket.on_end = ended
        runtime.submit(ticket, run, self.tasks)

    def __repr__(self) -> str:
        return f"<BackgroundTasks {[task.name for task in self.tasks]!r}>"


def _as_tasks(items: Iterable[object], groups: list[bool]) -> Iterator[BackgroundTask]:
    """Turn each item into offload tasks: see :class:`BackgroundTasks` for what is accepted.

    :param groups: gets, for each other framework's task list met, whether it asks for its
        tasks to run at once
    """
    for item in items:
        if isinstance(item, BackgroundTask):
            yield item
        elif isinstance(item, BackgroundTasks):
            item._drop_reservation()  # its tasks join this list: they are counted once, here
            if item._durable is not None:  # and are journaled again as this list's
                item._durable.handed_over()
            groups.append(item.concurrency == "group")
            yield from item.tasks
        elif (tasks := task_list_items(item)) is not None:
            groups.append(runs_as_group(item))
            yield from _as_tasks(tasks, groups)
        else:
            yield _new_task(*unpack(item))
