"""The Ravyn app the tests serve: the Lilya family's app (``lilya_family_app``), made
with Ravyn's classes."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from lilya_family_app import AppParts
from lilya_family_app import make_app as make_family_app
from ravyn import Gateway, Ravyn, background, get
from ravyn.core.datastructures import File, Redirect, Stream
from ravyn.responses import JSONResponse

from offload import TaskReport
from offload.ravyn import BackgroundTask, BackgroundTasks

PARTS = AppParts(
    name="ravyn",
    app=Ravyn,
    gateway=Gateway,
    get=get,
    background=background,
    redirect=Redirect,
    stream=Stream,
    file=File,
    json_response=JSONResponse,
    task=BackgroundTask,
    tasks=BackgroundTasks,
)

make_app: Callable[[str, Callable[[TaskReport], object]], Any] = partial(make_family_app, PARTS)
