"""Run a management command and write how long the command itself took.

``python -m benchmarks.timed collectstatic ARGS...`` is ``python -m django
collectstatic ARGS...`` except that, if ``BENCH_COMMAND_TIMING`` names a file,
the seconds from loading the command to its end (start-up excluded: the
interpreter, Django and ``django.setup()``) are written there. Those seconds
are the same for stock and ours, and on a small local tree they are most of a
run; the command time shows what each command's own work costs.
"""

from __future__ import annotations

import os
import sys
import time

import django
from django.core.management import ManagementUtility


def main() -> None:
    django.setup()
    start = time.perf_counter()
    try:
        ManagementUtility(["django-admin", *sys.argv[1:]]).execute()
    finally:
        if target := os.environ.get("BENCH_COMMAND_TIMING"):
            with open(target, "w") as handle:
                handle.write(f"{time.perf_counter() - start:.6f}\n")


if __name__ == "__main__":
    main()
