"""Run a command and write its wall time and its own peak RSS to a file.

``python benchmarks/launch.py RESULT -- ARGV...`` spawns ARGV, waits for it and
writes ``{"wall_s": ..., "maxrss_kb": ...}`` to RESULT, then exits with the
command's status (128 + N if a signal N ended it).

Why not ``os.wait4`` in the harness itself: on Linux a process's ``ru_maxrss``
starts at the peak RSS of whatever process called ``exec`` (the parent's memory
is counted up to the ``exec``), so a child of the harness would never report
less than the harness's own peak, tens of MB by the end of a run. This
launcher is small, so the RSS it passes on is well below any command's own.
It uses the standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> None:
    result, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        raise SystemExit("usage: launch.py RESULT -- ARGV...")
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    # Pass Ctrl-C and terminate on to the command; wait for it to end.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _: os.kill(pid, number))
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(result, "w") as handle:
        json.dump({"wall_s": wall, "maxrss_kb": usage.ru_maxrss}, handle)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
