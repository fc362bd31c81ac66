"""Run every benchmark in this folder and print their tables (``make bench``)."""

from __future__ import annotations

import bench_core  # this folder is on sys.path when the script runs
import bench_process


def main() -> None:
    bench_core.main()
    bench_process.main()


if __name__ == "__main__":
    main()
