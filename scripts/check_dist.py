"""Check what ``make dist`` built: the sdist holds the sources, and the wheel installs and runs.

The wheel goes into a fresh virtualenv of its own, outside the project, with the ``starlette``
extra; there offload runs one real background task. Run from the project root::

    python scripts/check_dist.py dist
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
import zipfile
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent

# Runs in the fresh virtualenv, from a directory of its own, so only the wheel can be imported.
SMOKE = """
import sys

import anyio

import offload
from offload.starlette import JSONResponse

assert offload.__file__.startswith(sys.prefix), f"offload imported from {offload.__file__}"
ran = []


async def main() -> None:
    tasks = offload.BackgroundTasks()
    tasks.add_task(ran.append, "ran")  # sync: a thread of offload's pool
    assert JSONResponse({"ok": True}, background=tasks).background is tasks
    await tasks()
    [report] = tasks.reports
    assert report.ok, report


anyio.run(main)
assert ran == ["ran"], ran
print(f"ran one task with offload from {offload.__file__}")
"""


def fail(message: str) -> NoReturn:
    """Stop with *message* on stderr and a non-zero exit code."""
    sys.exit(f"check_dist: {message}")


def one(dist: Path, pattern: str) -> Path:
    """Return the single file of *dist* that matches *pattern*.

    :raises SystemExit: if there is none, or more than one
    """
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        fail(f"expected one {pattern} in {dist}, got {[path.name for path in found]!r}")
    return found[0]


def check_sdist(sdist: Path, version: str) -> None:
    """Check that *sdist* holds the package's sources and the project's top-level files."""
    prefix = f"offload-{version}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    wanted = ["pyproject.toml", "src/offload/__init__.py", "src/offload/py.typed"]
    wanted += [name for name in ("LICENSE", "README.md") if (ROOT / name).exists()]
    missing = [name for name in wanted if f"{prefix}/{name}" not in names]
    if missing:
        fail(f"{sdist.name} lacks {missing!r}")
    # Caches and environments of a working tree must not ship.
    shipped = {name.split("/")[1] for name in names if name.count("/") >= 1}
    stray = sorted(shipped & {".venv", ".nox", ".hypothesis", ".mypy_cache", ".pytest_cache"})
    if stray:
        fail(f"{sdist.name} ships {stray!r}")


def check_wheel(wheel: Path) -> None:
    """Check that *wheel* holds the package, its ``py.typed`` and the pytest plugin's entry."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        wanted = ["offload/__init__.py", "offload/py.typed"]
        missing = [name for name in wanted if name not in names]
        if missing:
            fail(f"{wheel.name} lacks {missing!r}")
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        if "offload = offload.pytest_plugin" not in archive.read(entry_points).decode():
            fail(f"{wheel.name} does not register the pytest plugin")


def check_install(wheel: Path) -> None:
    """Install *wheel* with the ``starlette`` extra in a fresh virtualenv and run a task there."""
    with tempfile.TemporaryDirectory(prefix="offload-dist-") as tmp:
        env = Path(tmp) / "venv"
        venv.create(env, with_pip=True)
        python = env / "bin" / "python"
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", f"{wheel.resolve()}[starlette]"],
            check=True,
        )
        subprocess.run([python, "-c", SMOKE], cwd=tmp, check=True)


def main(argv: list[str]) -> None:
    """Check the sdist and the wheel in the directory ``argv[0]`` (``dist`` by default)."""
    dist = Path(argv[0] if argv else "dist")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sdist = one(dist, "*.tar.gz")
    wheel = one(dist, "*.whl")
    expected = (f"offload-{version}.tar.gz", f"offload-{version}-py3-none-any.whl")
    if (sdist.name, wheel.name) != expected:
        fail(f"expected {expected!r} in {dist}, got {(sdist.name, wheel.name)!r}")
    check_sdist(sdist, version)
    check_wheel(wheel)
    check_install(wheel)
    print(f"check_dist: {sdist.name} and {wheel.name} are good")


if __name__ == "__main__":
    main(sys.argv[1:])
