"""offload with Ravyn, the real package: ``offload.ravyn``'s task classes where Ravyn checks
its own (handlers' ``background=``, its response data structures), and Ravyn's own tasks given
to offload, in an app served by uvicorn. The tests are those of the Lilya family
(``lilya_family``), bound to Ravyn."""

from __future__ import annotations

import pydantic
from lilya_family import Framework, LilyaFamilyTests
from ravyn import background
from ravyn.core.datastructures import File, Redirect, Stream
from ravyn.responses import Response
from ravyn_testapp import make_app

from offload.ravyn import BackgroundTask, BackgroundTasks


class TestRavyn(LilyaFamilyTests):
    framework = Framework(
        name="ravyn",
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
