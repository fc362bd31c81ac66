"""Run every benchmark in this folder and print their tables (``make bench``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_core  # noqa: E402 (found through the path set above)


def main() -> None:
    bench_core.main()


if __name__ == "__main__":
    main()
