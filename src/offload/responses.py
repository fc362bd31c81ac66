"""BackgroundsMixin: give any response class a ``backgrounds=`` argument run by offload.

The mixin needs no web framework: it only sets ``self.background``, which Starlette,
FastAPI and the frameworks built on them await after the response is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._config import Concurrency, OnError
from ._foreign import carried
from ._task import BackgroundTasks, ExecutorChoice

__all__ = ["BackgroundsMixin", "merge_backgrounds"]


class BackgroundsMixin:
    """Give a response class offload's ``backgrounds=``, ``executor=``, ``on_error=``,
    ``concurrency=`` and ``detach=`` arguments. Put it first among the bases::

        class JSONResponse(BackgroundsMixin, starlette.responses.JSONResponse): ...

        return JSONResponse({"ok": True}, backgrounds=[BackgroundTask(render_pdf, 42)],
                            executor="process", on_error="continue")

    Every other argument goes to the response class unchanged. After it has run,
    ``self.background`` is an offload :class:`~offload.BackgroundTasks`: the tasks of a
    ``background=`` given as well first, then ``backgrounds``. With no task at all it stays
    ``None``, so a framework may still attach its own (FastAPI attaches the tasks injected
    into the endpoint only to a response whose ``background`` is ``None``).

    :param backgrounds: offload tasks, Starlette/FastAPI-style tasks (anything with ``func``,
        ``args`` and ``kwargs``), their ``BackgroundTasks`` (anything with ``tasks``), or
        zero-argument callables
    :param executor: the executor of the tasks that choose none themselves: a name, an
        :class:`~offload.Executor`, or a chooser called with each task
    :param on_error: the error policy of these tasks; the config's when ``None``
    :param concurrency: ``"sequential"`` or ``"group"``; the config's when ``None``
    :param detach: hand the tasks to the running :class:`~offload.Runtime` once the response
        is sent, so the server completes the request at once and nothing that happens to the
        request reaches them; the config's when ``None`` (see
        :attr:`offload.BackgroundTasks.detach`)
    :param durable: write the tasks to the runtime's journal now, so that they run at least
        once even if the server dies; the config's when ``None`` (see
        :attr:`offload.BackgroundTasks.durable`)
    :raises TypeError: if ``backgrounds`` is not a sequence, or holds something that is no task
    :raises ExecutorNotFound: if ``executor`` is an unknown name
    :raises NotPicklable: if a task goes to the process executor and cannot be pickled
    :raises Overloaded: if the tasks are detached and the runtime has ``max_pending`` lists
    :raises OffloadError: if the tasks are detached and no runtime is entered, or it is
        shutting down
    """

    # Empty, so the mixin also combines with response classes that use __slots__ (Litestar's).
    __slots__ = ()

    # Any: each framework types its own attribute, and this mixin puts offload's list there.
    background: Any

    def __init__(
        self,
        *args: Any,
        backgrounds: Iterable[object] | None = None,
        executor: ExecutorChoice | None = None,
        on_error: OnError | None = None,
        concurrency: Concurrency | None = None,
        detach: bool | None = None,
        durable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Read back rather than taken from kwargs: `background` may have come positionally.
        self.background = merge_backgrounds(
            getattr(self, "background", None),
            backgrounds,
            executor=executor,
            on_error=on_error,
            concurrency=concurrency,
            detach=detach,
            durable=durable,
        )


def merge_backgrounds(
    background: object,
    backgrounds: Iterable[object] | None,
    *,
    executor: ExecutorChoice | None = None,
    on_error: OnError | None = None,
    concurrency: Concurrency | None = None,
    detach: bool | None = None,
    durable: bool | None = None,
) -> BackgroundTasks | None:
    """Return one offload task list: the tasks of ``background`` first, then ``backgrounds``.

    An offload :class:`~offload.BackgroundTasks` given as ``background`` is returned as it is
    when there is nothing to add to it; otherwise its tasks keep what its own executor choice
    chose for them, and its ``on_error``, ``concurrency`` and ``detach`` apply to the whole
    list unless given here.

    :returns: ``None`` when there is no task at all
    :raises TypeError: if ``backgrounds`` is not a sequence
    """
    if backgrounds is not None and not isinstance(backgrounds, Iterable):
        raise TypeError(
            f"backgrounds must be a sequence of tasks, got {backgrounds!r}; "
            "wrap a single task or task list in a list: backgrounds=[...]"
        )
    extra = list(backgrounds or ())
    # offload.lilya's and offload.ravyn's task lists stand for an offload list: that list's
    # on_error, concurrency and detach then hold, as for an offload list given here.
    background = carried(background)
    if background is None and not extra:
        return None
    own = background if isinstance(background, BackgroundTasks) else None
    if own is None:
        items = extra if background is None else [background, *extra]
        return BackgroundTasks(
            items, executor=executor, on_error=on_error, concurrency=concurrency, detach=detach,
            durable=durable,
        )  # fmt: skip
    if durable is None and own.durable:
        durable = True
    if (
        not extra
        and executor is None
        and on_error is None
        and concurrency is None
        and (durable is None or durable == own.durable)
    ):
        if detach is not None:
            own.detach = detach
        return own
    # Its tasks keep what its own executor choice chose for them; the response's choice
    # applies to the tasks that have none.
    return BackgroundTasks(
        [own, *extra],
        executor=executor,
        on_error=on_error or own.on_error,
        concurrency=concurrency or own.concurrency,
        detach=own.detach if detach is None else detach,
        durable=durable,
    )
