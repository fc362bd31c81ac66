"""The executor interface: the one abstract base every way of running a task builds on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from .._call import Call
    from .._config import OffloadConfig


class Executor(ABC):
    """Runs background tasks somewhere: on the event loop, in a thread, in another process.

    Subclasses implement :meth:`run`; pools override :meth:`start` and :meth:`aclose`.
    A runtime starts an executor before its first task and closes it when the runtime
    closes, so both must be idempotent, and ``start`` must work again after ``aclose``.

    Cancelling :meth:`run` (a timeout, a failing sibling in a group) must stop the work as
    well as the executor can, and say in its docstring what it cannot stop.
    """

    #: The name reports and logs show; an executor made by the registry gets its registered name.
    name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    @classmethod
    def from_config(cls, config: OffloadConfig) -> Self:
        """Build the executor from the settings in ``config``; the registry calls this."""
        return cls()

    async def start(self) -> None:  # noqa: B027 (a default, not an abstract method)
        """Acquire what the executor needs (a pool, workers) before its first task."""

    async def aclose(self) -> None:  # noqa: B027 (a default, not an abstract method)
        """Release what :meth:`start` acquired, after the tasks running now have ended."""

    def prepare(self, task: Call) -> None:  # noqa: B027 (a default, not abstract)
        """Check early that this executor can run ``task``.

        Called as soon as a task is known to go to this executor (``add_task``, ``task.set``,
        a response's construction), so a task that can never run fails while the endpoint
        still runs rather than after the response is sent. May cache work on the task.
        """

    @abstractmethod
    async def run(self, task: Call) -> Any:
        """Run ``task`` once and return its result, raising what it raised."""

    def explain_timeout(self, task: Call) -> str | None:
        """Say why ``task``'s last run here ran out of time, if the executor knows more than
        the timeout itself; the runner ends the :exc:`TaskTimeout` message with it."""
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
