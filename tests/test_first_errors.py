"""The first errors a newcomer meets end with the fix, in a few lines.

Each script runs in a real interpreter of its own, in a session of its own, so that whatever it
starts (a fork server, workers) can be found and killed if it hangs or leaves them behind.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from processes import kill_session, wait_for_no_session_processes

#: What a newcomer's script may print before its error, at most.
SHORT = 40

GUARD_FIX = 'under `if __name__ == "__main__":`'

# The script of the guide, with no `if __name__ == "__main__":` guard; {bind} binds the task.
UNGUARDED = """
import anyio
import offload

def f() -> None:
    print("worked")

async def main() -> None:
    tasks = offload.BackgroundTasks()
    {bind}
    await tasks()
    print(tasks.reports[0].status)

{configure}
anyio.run(main{backend})
"""


def run_script(script: Path) -> tuple[int, list[str], str]:
    """Run ``script``; return its exit code, its output's lines and its stdout alone."""
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=script.parent,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        process.communicate()
        raise
    finally:
        left = wait_for_no_session_processes(process.pid, 2)
        kill_session(process.pid)
    assert left == {}, f"the script left processes running: {left}"
    return process.returncode, (stdout + stderr).splitlines(), stdout


def write_script(tmp_path: Path, bind: str, configure: str = "", backend: str = "") -> Path:
    script = tmp_path / "script.py"
    code = UNGUARDED.format(bind=bind, configure=configure, backend=backend)
    script.write_text(textwrap.dedent(code))
    return script


@pytest.mark.parametrize("backend", ["", ', backend="trio"'], ids=["asyncio", "trio"])
@pytest.mark.parametrize(
    ("bind", "configure"),
    [
        ('tasks.add_task(f).set(executor="process")', ""),
        ("tasks.add_task(f)", 'offload.configure(offload.OffloadConfig(executor="process"))'),
        ('tasks.add_task(offload.task_options(executor="process")(f))', ""),
    ],
    ids=["set", "config", "task_options"],
)
def test_a_process_task_without_a_main_guard_ends_with_the_fix_in_a_few_lines(
    tmp_path: Path, bind: str, configure: str, backend: str
) -> None:
    script = write_script(tmp_path, bind, configure, backend)
    returncode, lines, _ = run_script(script)
    output = "\n".join(lines)
    assert returncode == 1, output
    assert GUARD_FIX in lines[-1], output
    assert f"main module {script} runs its top-level code (line 15)" in lines[-1]
    assert len(lines) < SHORT, output
    assert "worked" not in output  # no worker ran, so none ran the script again
    assert output.count("Traceback") == 1, output


def test_an_unguarded_runtime_that_names_the_process_executor_ends_with_the_fix(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio
            import offload

            async def main() -> None:
                async with offload.Runtime(offload.OffloadConfig(executor="process")):
                    pass

            anyio.run(main)
            """
        )
    )
    returncode, lines, _ = run_script(script)
    assert returncode == 1
    assert GUARD_FIX in lines[-1]
    assert len(lines) < SHORT, "\n".join(lines)


def test_a_script_without_a_main_guard_runs_tasks_off_the_process_executor(
    tmp_path: Path,
) -> None:
    script = write_script(tmp_path, 'tasks.add_task(f).set(executor="thread")')
    returncode, lines, stdout = run_script(script)
    assert returncode == 0, "\n".join(lines)
    assert stdout == "worked\nsucceeded\n"


def test_only_start_methods_that_import_the_main_module_need_its_guard(tmp_path: Path) -> None:
    # A forked worker is a copy of the server: it does not import the main module again.
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from offload import OffloadError
            from offload.executors._can_start import check_main_guard

            check_main_guard("fork")
            for method in ("spawn", "forkserver"):
                try:
                    check_main_guard(method)
                except OffloadError:
                    print(method, "refused")
            """
        )
    )
    returncode, lines, stdout = run_script(script)
    assert returncode == 0, "\n".join(lines)
    assert stdout == "spawn refused\nforkserver refused\n"


def test_a_script_read_from_standard_input_is_told_to_be_saved(tmp_path: Path) -> None:
    # python - < script.py: workers could not import the main module again.
    code = 'if __name__ == "__main__":\n' + textwrap.indent(
        textwrap.dedent(UNGUARDED.format(
            bind='tasks.add_task(print).set(executor="process")', configure="", backend=""
        )), "    "
    )  # fmt: skip
    process = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=60,
        cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    lines = (process.stdout + process.stderr).splitlines()
    assert process.returncode == 1
    assert len(lines) < SHORT, "\n".join(lines)
    assert "comes from <stdin>" in lines[-1]
    assert "save the code to a file" in lines[-1]
