from __future__ import annotations

import subprocess
import sys
import types

import offload
import offload.executors

#: Imported on first use (they bring multiprocessing), so not in the module's namespace yet.
LAZY = {"PoolExecutor", "ProcessExecutor"}


def public_names(module: types.ModuleType) -> set[str]:
    return LAZY | {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("offload")
    }


def test_all_is_sorted_and_lists_every_public_member() -> None:
    for module in (offload, offload.executors):
        assert module.__all__ == sorted(module.__all__)
        assert set(module.__all__) == public_names(module)


def test_public_members_say_they_belong_to_offload() -> None:
    for name in offload.__all__:
        assert getattr(offload, name).__module__.startswith("offload")


def test_importing_offload_imports_no_web_framework_pytest_or_multiprocessing() -> None:
    script = (
        "import sys, offload\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'starlette', 'fastapi', 'pytest', '_pytest', 'trio', 'multiprocessing'}"
        " or m == 'concurrent.futures.process']\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_lazy_executors_are_there_on_first_use() -> None:
    for module in (offload, offload.executors):
        for name in LAZY:
            assert getattr(module, name).__name__ == name
