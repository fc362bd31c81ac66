from __future__ import annotations

import subprocess
import sys
import types

import offload
import offload.executors


def public_names(module: types.ModuleType) -> set[str]:
    return {
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


def test_importing_offload_imports_no_web_framework_and_no_pytest() -> None:
    script = (
        "import sys, offload\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'starlette', 'fastapi', 'pytest', '_pytest', 'trio'}]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
