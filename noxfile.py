"""Each framework's tests against its real package, in an environment of its own (their pins
differ: Ellar pins an older Starlette, Esmerald an older Lilya). ``make test-frameworks``.

A framework is ``tests/frameworks/test_<name>.py`` with its pins in
``tests/frameworks/requirements-<name>.txt``; each becomes a session of that name.
"""

from __future__ import annotations

from pathlib import Path

import nox

FRAMEWORKS = Path(__file__).parent / "tests" / "frameworks"

#: What every framework's tests need besides offload and the framework itself.
TEST_TOOLS = ["pytest>=9.0", "pytest-timeout>=2.3", "trio>=0.27", "httpx>=0.27", "mypy>=1.13"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True


def framework_session(name: str, requirements: Path) -> None:
    tests = FRAMEWORKS / f"test_{name}.py"
    module = Path("src", "offload", f"{name}.py")

    @nox.session(name=name)
    def session(session: nox.Session) -> None:
        session.install("-e", ".", *TEST_TOOLS, "-r", str(requirements))
        # Type-checked here, against the real package, which the main environment lacks.
        example = Path("examples", f"{name}_app.py")  # excluded from the main mypy run
        typed = [module, tests, example, *FRAMEWORKS.glob(f"{name}_*.py")]
        # MYPYPATH: the helpers of tests/ (servers, test_docs) that framework tests import.
        paths = [str(path) for path in typed if path.exists()]
        session.run("mypy", *paths, env={"MYPYPATH": str(FRAMEWORKS.parent)})
        # Only this framework's tests: the main suite's conftest still applies.
        session.run("pytest", str(tests), *session.posargs)


for requirements in sorted(FRAMEWORKS.glob("requirements-*.txt")):
    framework_session(requirements.stem.removeprefix("requirements-"), requirements)


#: FastAPI's own telemetry tests of background tasks, run against offload.fastapi.Backgrounds
#: in place of FastAPI's BackgroundTasks: the test file is taken from FastAPI's sdist at run
#: time and changed in one import.
FASTAPI = "fastapi==0.165.0"
FASTAPI_TESTS = "tests/test_telemetry"
#: Where offload departs on purpose (see docs/observability.md): its list holds offload's
#: tasks, not the objects given; the legacy instrumentations patch Starlette's task class.
FASTAPI_DEPARTURES = [
    "test_background.py::test_background_task_objects",
    "test_background.py::test_background_task_integrations[contrib]",
    "test_background.py::test_background_task_integrations[logfire]",
]


@nox.session(name="fastapi_telemetry")
def fastapi_telemetry(session: nox.Session) -> None:
    import tarfile

    session.install("-e", ".", FASTAPI, "opentelemetry-sdk", "httpx2", "logfire", "pip",
                    *TEST_TOOLS)  # fmt: skip
    work = Path(session.create_tmp()).resolve()
    session.run("pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", FASTAPI,
                "--dest", str(work))  # fmt: skip
    (sdist,) = work.glob("fastapi-*.tar.gz")
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        members = [m for m in archive.getmembers() if f"/{FASTAPI_TESTS}/" in m.name]
        archive.extractall(work, members=members, filter="data")
    tests = work / root / FASTAPI_TESTS
    (tests.parent / "__init__.py").touch()
    background = tests / "test_background.py"
    own = "from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException\n"
    text = background.read_text()
    if own not in text:
        session.error(f"{background} no longer imports BackgroundTasks as this session expects")
    background.write_text(text.replace(own, (
        "from fastapi import Depends, FastAPI, HTTPException\n"
        "from offload.fastapi import Backgrounds as BackgroundTasks\n"
    )))  # fmt: skip
    deselected = [f"--deselect={FASTAPI_TESTS}/{test}" for test in FASTAPI_DEPARTURES]
    with session.chdir(work / root):
        session.run("pytest", "-p", "no:cacheprovider", f"{FASTAPI_TESTS}/test_background.py",
                    "--rootdir", ".", *deselected, *session.posargs)  # fmt: skip
