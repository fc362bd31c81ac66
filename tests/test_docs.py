"""Every Python sample in the docs and the README runs, so none can rot.

A page's samples run in order in one namespace, which starts with the names the prose takes
as given (``tests/docs_support.py``). A sample with ``title="name.py"`` becomes that module; a
sample that defines tests runs under pytest with the page's modules beside it; a fragment from
inside a function (a top-level ``return``, ``await`` or ``async with``) runs as the body of one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.M | re.S)
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
#: The widest a line of a code sample may be: the site's text column shows 80 columns of
#: code, and a wider sample scrolls, hiding its end (often the comment that explains it).
WIDTH = 80


@dataclass(frozen=True)
class Sample:
    page: Path
    line: int
    title: str | None
    code: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_samples(page: Path) -> list[Sample]:
    text = page.read_text()
    samples = []
    for match in FENCE.finditer(text):
        if match["lang"] != "python":
            continue
        title = TITLE.search(match["info"])
        line = text.count("\n", 0, match.start()) + 1
        samples.append(Sample(page, line, title and title["title"], match["code"]))
    return samples


def run_sample(sample: Sample, namespace: dict[str, object]) -> None:
    try:
        code = compile(sample.code, str(sample), "exec")
    except SyntaxError as error:
        if "outside" not in str(error) or "function" not in str(error):
            raise
        # A fragment from inside an (async) function: run it as the body of one.
        body = textwrap.indent(sample.code, "    ")
        exec(compile(f"async def _fragment():\n{body}", str(sample), "exec"), namespace)
        anyio.run(namespace["_fragment"])  # type: ignore[arg-type]
        return
    exec(code, namespace)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_samples_of_the_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = python_samples(page)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_sample"}
    exec("from docs_support import *", namespace)
    tests = []
    for sample in samples:
        if sample.title:
            (tmp_path / sample.title).write_text(sample.code)
        elif re.search(r"^(async )?def test_", sample.code, re.M):
            tests.append(sample)
        else:
            run_sample(sample, namespace)
    for index, sample in enumerate(tests):
        (tmp_path / f"test_sample_{index}.py").write_text(sample.code)
    if tests:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, f"samples of {page.name} failed:\n{result.stdout}"


@pytest.mark.parametrize(
    "page",
    [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"],
    ids=lambda page: str(page.relative_to(ROOT)),
)
def test_no_line_of_a_code_sample_is_wider_than_the_text_column(page: Path) -> None:
    text = page.read_text()
    too_wide = []
    for match in FENCE.finditer(text):
        first = text.count("\n", 0, match.start("code")) + 1
        for number, line in enumerate(match["code"].splitlines(), start=first):
            if len(line) > WIDTH:
                too_wide.append(f"line {number} has {len(line)} columns: {line.strip()}")
    assert not too_wide, f"code in {page.name} wider than {WIDTH} columns:\n" + "\n".join(too_wide)


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}" in nav, f"{page.name} is missing from mkdocs.yml's nav"


def test_the_configuration_page_lists_every_field() -> None:
    from offload._config import FIELD_NAMES

    text = (ROOT / "docs" / "configuration.md").read_text()
    for name in FIELD_NAMES:
        assert f"| `{name}` | `OFFLOAD_{name.upper()}` |" in text, name
