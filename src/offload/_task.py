"""BackgroundTask and BackgroundTasks: drop-ins for Starlette's, with per-task options."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, Self, get_args

from ._callables import callable_name, is_async_callable
from ._config import Concurrency, OnError, check_choice
from ._options import (
    NO_OPTIONS,
    ExecutorSpec,
    TaskOptions,
    check_executor_spec,
    function_options,
)
from ._report import TaskReport
from ._resolution import ExecutorChoice, checked_choice, prepare
from ._runner import TaskRun
from ._runtime import current_runtime
from .executors._base import Executor

if TYPE_CHECKING:
    from ._detached import Ticket
    from ._runtime import Runtime

P = ParamSpec("P")


class BackgroundTask:
    """One call to make after the response is sent: ``func(*args, **kwargs)``.

    ``await task()`` runs it with the active runtime's config, as Starlette's does: a
    coroutine function on the event loop, anything else in a thread, unless an executor
    is chosen with :meth:`set`, ``@task_options`` or the config.

    :raises TypeError: if ``func`` is not callable, or is a coroutine object
    """

    def __init__(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        check_callable(func, "BackgroundTask()")
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async_callable(func)
        self.options = NO_OPTIONS
        self.defaults = function_options(func)
        self._name: str | None = None  # cached: reports and logs read it often
        # The pickled call, cached here by executors that ship tasks to other processes.
        self.payload: bytes | None = None
        if self.defaults.executor is not None:
            prepare(self, self.defaults.executor, current_runtime())

    def set(
        self,
        *,
        executor: ExecutorSpec | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        name: str | None = None,
    ) -> Self:
        """Set this task's own options in place and return the task, for chaining.

        Options left as ``None`` keep their current value. Setting an executor lets it
        check the task at once: a process executor pickles it here.

        ``timeout`` limits each attempt. ``retries`` runs a failed or timed-out task (a
        crashed worker included) again, up to that many times, after an exponential backoff
        with jitter (``retry_backoff``); its report's ``attempts`` says how many runs it
        took. Retry only idempotent tasks: an attempt may have done part of its work before
        it failed, and a thread task that timed out runs on beside the next attempt.

        :raises ExecutorNotFound: if ``executor`` is an unknown name
        :raises NotPicklable: if the executor must pickle the task and cannot
        """
        old = self.options
        new = TaskOptions(
            executor=old.executor if executor is None else executor,
            timeout=old.timeout if timeout is None else timeout,
            retries=old.retries if retries is None else retries,
            name=old.name if name is None else name,
        )
        # Set before the executor checks the task, so that its errors show the new name;
        # taken back if it refuses, so that a failed set changes nothing.
        self._set_options(new)
        if executor is not None:
            try:
                prepare(self, executor, current_runtime())
            except BaseException:
                self._set_options(old)
                raise
        return self

    def _set_options(self, options: TaskOptions) -> None:
        self.options = options
        self._name = None

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
        result = self.func(*self.args, **self.kwargs)
        if inspect.iscoroutine(result):
            result.close()
            raise TypeError(
                f"background task {self.name!r} returned a coroutine instead of running it; "
                "pass the coroutine function and its arguments, e.g. add_task(notify, x) "
                "instead of add_task(lambda: notify(x))"
            )
        return result

    async def __call__(self) -> None:
        await TaskRun([self]).run()

    def __repr__(self) -> str:
        return f"<BackgroundTask {self.name!r}>"


class BackgroundTasks:
    """An ordered list of background tasks, run one after another (or together) after the
    response is sent. A drop-in for Starlette's and FastAPI's ``BackgroundTasks``.

    :param tasks: offload tasks, Starlette/FastAPI-style tasks (anything with ``func``,
        ``args``, ``kwargs``), their ``BackgroundTasks`` (anything with ``tasks``), or
        zero-argument callables
    :param executor: the executor of tasks that choose none themselves: a name, an
        :class:`Executor`, or a chooser called with each task that returns either
    :param on_error: the error policy of this list; the config's when ``None``
    :param concurrency: ``"sequential"`` or ``"group"``; the config's when ``None``
    :param detach: hand the list to the running :class:`~offload.Runtime` when awaited,
        instead of running it in the caller (the request); the config's when ``None``.
        See :attr:`detach`.
    :ivar reports: after a run, one :class:`TaskReport` per task, in task order
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
    ) -> None:
        if on_error is not None:
            check_choice("on_error", on_error, get_args(OnError))
        if concurrency is not None:
            check_choice("concurrency", concurrency, get_args(Concurrency))
        if not (executor is None or isinstance(executor, str | Executor) or callable(executor)):
            raise TypeError(
                "executor must be a name, an offload.Executor or a chooser callable, "
                f"got {executor!r}"
            )
        if isinstance(executor, str):
            check_executor_spec(executor)
        self.executor = executor
        self.on_error = on_error
        self.concurrency = concurrency
        self.tasks: list[BackgroundTask] = []
        self.reports: list[TaskReport] = []
        self._chosen: dict[BackgroundTask, ExecutorSpec | None] = {}
        self._ticket: Ticket | None = None
        self._release_unrun: weakref.finalize[Any, BackgroundTasks] | None = None
        self._detached = False
        runtime = current_runtime()
        if detach is None:
            if runtime.config.detach:
                runtime._check_detach("the config's detach=True")
                self._detached = True
        else:
            self.detach = detach
        for task in as_tasks(tasks or ()):
            self._append(task, runtime)

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
        if value and not self._detached:
            runtime = current_runtime()
            runtime._check_detach()
            if self.tasks:
                self._reserve(runtime)
        elif not value and self._ticket is not None:
            self._drop_ticket()
        self._detached = value

    def add_task(
        self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> BackgroundTask:
        """Append ``func(*args, **kwargs)`` and return the new task (for ``.set(...)``).

        :raises TypeError: if ``func`` is not callable, or is a coroutine object
        :raises NotPicklable: if the task goes to a process executor and cannot be pickled
        """
        check_callable(func, "add_task()")
        task = BackgroundTask(func, *args, **kwargs)
        self._append(task, current_runtime())
        return task

    def choose(self, task: BackgroundTask) -> ExecutorSpec | None:
        """Return this list's executor for ``task`` (step 3 of the resolution), if any."""
        executor = self.executor
        if executor is None or isinstance(executor, str | Executor):
            return executor
        # A chooser is called once per task, when the task joins the list.
        try:
            return self._chosen[task]
        except KeyError:
            spec = self._chosen[task] = checked_choice(executor, task)
            return spec

    async def __call__(self) -> None:
        if self._detached:
            self._hand_over()
            return
        run = TaskRun(
            self.tasks, choose=self.choose, on_error=self.on_error, concurrency=self.concurrency
        )
        try:
            await run.run()
        finally:
            self.reports = run.reports

    def _append(self, task: BackgroundTask, runtime: Runtime) -> None:
        if task.explicit_executor is None:  # else it was prepared when its executor was set
            spec = self.choose(task)
            prepare(task, runtime.config.executor if spec is None else spec, runtime)
        if self._detached and self._ticket is None:
            self._reserve(runtime)
        self.tasks.append(task)

    def _reserve(self, runtime: Runtime) -> None:
        self._ticket = ticket = runtime._reserve(self.tasks)
        # A list whose response is never sent is never awaited: its place must not stay
        # taken, and its tasks must not vanish unnamed.
        self._release_unrun = weakref.finalize(self, ticket.abandon)
        self._release_unrun.atexit = False

    def _take_ticket(self) -> Ticket | None:
        ticket, self._ticket = self._ticket, None
        if self._release_unrun is not None:
            self._release_unrun.detach()
            self._release_unrun = None
        return ticket

    def _drop_ticket(self) -> None:
        """Give up the list's place in the runtime: its tasks were taken into another list."""
        ticket = self._take_ticket()
        if ticket is not None:
            ticket.end()

    def _hand_over(self) -> None:
        ticket = self._take_ticket()
        if not self.tasks:  # emptied since it was scheduled: nothing to run
            if ticket is not None:
                ticket.end()
            return
        if ticket is None:  # awaited again: schedule it again
            ticket = current_runtime()._reserve(self.tasks)
        runtime = ticket.runtime
        try:
            run = TaskRun(
                self.tasks,
                choose=self.choose,
                on_error=self.on_error,
                concurrency=self.concurrency,
                runtime=runtime,
            )
        except BaseException:
            ticket.end()
            raise
        if runtime._capture is not None:  # a test recorder takes it instead
            ticket.end()
            runtime._capture(run)
            return
        ticket.on_end = self._ended
        runtime._submit(ticket, run)

    def _ended(self, run: TaskRun) -> None:
        self.reports = run.reports

    def __repr__(self) -> str:
        return f"<BackgroundTasks {[task.name for task in self.tasks]!r}>"


def as_tasks(items: Iterable[object]) -> Iterator[BackgroundTask]:
    """Turn each item into offload tasks: see :class:`BackgroundTasks` for what is accepted."""
    for item in items:
        if isinstance(item, BackgroundTask):
            yield item
        elif isinstance(item, BackgroundTasks):
            item._drop_ticket()  # its tasks join this list: they are counted once, here
            yield from item.tasks
        elif hasattr(item, "tasks"):  # Starlette's or FastAPI's BackgroundTasks
            yield from as_tasks(item.tasks)
        elif all(hasattr(item, a) for a in ("func", "args", "kwargs")) and _func_runs_as_is(item):
            yield BackgroundTask(item.func, *item.args, **item.kwargs)  # type: ignore[attr-defined]
        else:
            check_callable(item, "a background task list")
            _check_no_arguments(item)  # type: ignore[arg-type]
            yield BackgroundTask(item)  # type: ignore[arg-type]


def _func_runs_as_is(task: object) -> bool:
    """Whether a Starlette-style task's ``func`` can be run on its own, without the task.

    Lilya's task wraps a sync function in an adapter that returns an awaitable without being
    a coroutine function, so run as a sync call it would silently do nothing; such a task is
    run whole instead (it is itself an async callable). Starlette's and FastAPI's tasks say
    which kind their ``func`` is with ``is_async``.
    """
    func = task.func  # type: ignore[attr-defined]
    return is_async_callable(func) or hasattr(task, "is_async") or not is_async_callable(task)


def check_callable(func: object, where: str) -> None:
    """Raise a teaching :exc:`TypeError` unless ``func`` is a callable (not a coroutine)."""
    if inspect.iscoroutine(func):
        name = func.__qualname__
        func.close()  # it will never run; closing it spares the user a second warning
        raise TypeError(
            f"{where} got the coroutine object {name}(...), not a function. Pass the function "
            f"and its arguments separately, e.g. add_task({name}, ...) instead of "
            f"add_task({name}(...)), so the call happens after the response is sent"
        )
    if not callable(func):
        raise TypeError(f"{where} needs a callable, got {func!r} ({type(func).__name__})")


def _check_no_arguments(func: Callable[..., object]) -> None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return
    try:
        signature.bind()
    except TypeError:
        name = callable_name(func)
        raise TypeError(
            f"{name} needs arguments, so it cannot be a background task on its own; "
            f"wrap it with its arguments: BackgroundTask({name}, ...)"
        ) from None
