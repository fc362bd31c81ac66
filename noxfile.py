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
