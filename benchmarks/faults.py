"""Fault figures: how many faults and kills the fault tests survived.

``python -m benchmarks.faults [PYTEST ARGS]`` runs ``tests/test_faults.py``
(a fault-injecting proxy in front of moto, and runs killed with SIGKILL and
SIGINT at seeded points, each followed by a clean run) and sums what its
tests record with pytest's ``record_property``: faults injected by kind,
kill trials per storage, bytes lost. The figures go to stdout and to
``benchmarks/results/faults.json``; the exit status is pytest's. The seed is
``FAULT_SEED`` (default 1). About four minutes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


class Figures:
    """A pytest plugin that sums the properties the fault tests record."""

    def __init__(self) -> None:
        self.faults: dict[str, dict[str, Any]] = {}
        self.kill_trials: dict[str, dict[str, int]] = {}
        self.bytes_lost = 0
        self.notes: list[str] = []
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.append(report.nodeid)
        if report.when != "call":
            return
        value: Any
        for name, value in report.user_properties:
            if name == "faults":
                self.faults[value["name"]] = value
            elif name == "kill_trials":
                self.kill_trials.update(value)
            elif name == "bytes_lost":
                self.bytes_lost += value
            elif name == "note":
                self.notes.append(str(value))

    def document(self, seconds: float) -> dict[str, Any]:
        injected: Counter[str] = Counter()
        for run in self.faults.values():
            injected.update(run["faults"])
        return {
            "seed": int(os.environ.get("FAULT_SEED", "1")),
            "seconds": round(seconds, 1),
            "trials": sum(t.get("trials", 0) for t in self.kill_trials.values()),
            "kill_trials": self.kill_trials,
            "faults_injected": dict(sorted(injected.items())),
            "faults_injected_total": sum(injected.values()),
            "fault_runs": self.faults,
            "bytes_lost": self.bytes_lost,
            "failed_tests": self.failed,
            "notes": self.notes,
        }


def main() -> int:
    os.chdir(REPO)
    figures = Figures()
    started = time.monotonic()
    status = pytest.main(
        ["tests/test_faults.py", "-q", "-p", "no:cacheprovider", *sys.argv[1:]],
        plugins=[figures],
    )
    document = figures.document(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(document, indent=1) + "\n")
    print(
        f"\nfault figures (seed {document['seed']}): {document['trials']} kill "
        f"trials {document['kill_trials']}; faults injected "
        f"{document['faults_injected_total']} {document['faults_injected']}; "
        f"bytes lost {document['bytes_lost']}; failed tests "
        f"{len(document['failed_tests'])}; written to {RESULTS / 'faults.json'}"
    )
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
