"""The Esmerald app the tests serve: the Lilya family's app (``lilya_family_app``), made
with Esmerald's classes."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from esmerald import Esmerald, Gateway, background, get
from esmerald.core.datastructures import File, Redirect, Stream
from esmerald.responses import JSONResponse
from lilya_family_app import AppParts
from lilya_family_app import make_app as make_family_app

from offload import TaskReport
from offload.esmerald import BackgroundTask, BackgroundTasks

PARTS = AppParts(
    name="esmerald",
    app=Esmerald,
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
