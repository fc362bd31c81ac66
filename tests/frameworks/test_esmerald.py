"""offload with Esmerald, the real package: ``offload.esmerald``'s task classes where
Esmerald checks its own (handlers' ``background=``, its response data structures), and
Esmerald's own tasks given to offload, in an app served by uvicorn. The tests are those of
the Lilya family (``lilya_family``), bound to Esmerald."""

from __future__ import annotations

import pydantic
from esmerald import background
from esmerald.core.datastructures import File, Redirect, Stream
from esmerald.responses import Response
from esmerald_testapp import make_app
from lilya_family import Framework, LilyaFamilyTests

from offload.esmerald import BackgroundTask, BackgroundTasks


class TestEsmerald(LilyaFamilyTests):
    framework = Framework(
        name="esmerald",
        background=background,
        redirect=Redirect,
        stream=Stream,
        file=File,
        response=Response,
        make_app=make_app,
        task=BackgroundTask,
        tasks=BackgroundTasks,
        refused=pydantic.ValidationError,
    )
