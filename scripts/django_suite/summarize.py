"""Read the log of a Django ``runtests.py`` run and report on it.

``series LOG EXIT_CODE LABEL RESULTS``
    Print one summary line for the run (and, if it failed, the failing tests
    with the last line of each traceback), and append its counts to the JSON
    lines file RESULTS. Exits 1 when the run failed.

``total RESULTS``
    Print ``N passed, M failed`` over every run in RESULTS (errors count as
    failures). Exits 1 when any run failed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

RAN = re.compile(r"^Ran (\d+) tests? in ")
STATUS = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$")
PROBLEM = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (.+)$")
SEPARATOR = re.compile(r"^(=+|-+)$")


@dataclass
class Result:
    label: str
    exit_code: int
    finished: bool = False
    ran: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    expected_failures: int = 0
    unexpected_successes: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        counted = self.failures + self.unexpected_successes
        # A run that did not finish, or whose runner exited non-zero without
        # reporting any problem, still counts as one failure.
        silent = not (counted or self.errors)
        if silent and (not self.finished or self.exit_code):
            return 1
        return counted

    @property
    def passed(self) -> int:
        bad = self.failures + self.errors + self.unexpected_successes
        other = self.skipped + self.expected_failures
        return max(self.ran - bad - other, 0)

    @property
    def ok(self) -> bool:
        return self.finished and self.exit_code == 0 and not self.failed

    def line(self) -> str:
        if not self.finished:
            return (
                f"{self.label}: did not finish (exit code {self.exit_code}): "
                f"ran {self.ran}, passed {self.passed}, failed {self.failed}, "
                f"errors {self.errors}, skipped {self.skipped}"
            )
        text = (
            f"{self.label}: ran {self.ran}, passed {self.passed}, "
            f"failed {self.failures}, errors {self.errors}, skipped {self.skipped}"
        )
        if self.expected_failures:
            text += f", expected failures {self.expected_failures}"
        if self.unexpected_successes:
            text += f", unexpected successes {self.unexpected_successes}"
        if self.exit_code and not (self.failures or self.errors):
            text += f" (runner exited {self.exit_code})"
        return text


def parse(text: str, label: str, exit_code: int) -> Result:
    result = Result(label=label, exit_code=exit_code)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        ran = RAN.match(line)
        if ran:
            result.ran = int(ran.group(1))
            # The status line follows, after an optional blank line.
            for after in lines[i + 1 : i + 4]:
                status = STATUS.match(after)
                if status:
                    result.finished = True
                    _counts(result, status.group(2) or "")
                    break
    result.problems = _problems(lines)
    return result


def _counts(result: Result, details: str) -> None:
    for part in filter(None, (p.strip() for p in details.split(","))):
        key, _, value = part.partition("=")
        attr = key.strip().replace(" ", "_")
        if attr in {"failures", "errors", "skipped"}:
            setattr(result, attr, int(value))
        elif attr == "expected_failures":
            result.expected_failures = int(value)
        elif attr == "unexpected_successes":
            result.unexpected_successes = int(value)


def _problems(lines: list[str]) -> list[tuple[str, str, str]]:
    """(kind, test, last line of its traceback) for each reported problem."""
    found = []
    for i, line in enumerate(lines):
        match = PROBLEM.match(line)
        if not match or i == 0 or not SEPARATOR.match(lines[i - 1]):
            continue
        body = []
        for after in lines[i + 2 :]:
            if SEPARATOR.match(after) or RAN.match(after):
                break
            body.append(after)
        message = next((b.strip() for b in reversed(body) if b.strip()), "")
        if len(message) > 200:
            message = message[:197] + "..."
        found.append((match.group(1), match.group(2), message))
    return found


def cmd_series(log: Path, exit_code: int, label: str, results: Path) -> int:
    text = log.read_text(encoding="utf-8", errors="replace")
    result = parse(text, label, exit_code)
    print(result.line())
    record = asdict(result)
    record.update(passed=result.passed, failed=result.failed, ok=result.ok)
    with results.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    if result.ok:
        return 0
    if result.problems:
        print(f"  failing tests ({len(result.problems)}):")
        for kind, test, message in result.problems:
            print(f"    {kind}: {test}")
            if message:
                print(f"        {message}")
    tail = text.splitlines()[-40:]
    print(f"  last {len(tail)} lines of {log}:")
    for line in tail:
        print(f"  | {line}")
    return 1


def cmd_total(results: Path) -> int:
    records = []
    if results.is_file():
        text = results.read_text(encoding="utf-8")
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    passed = sum(r["passed"] for r in records)
    failed = sum(r["failed"] + r["errors"] for r in records)
    print(f"{passed} passed, {failed} failed")
    return 0 if records and all(r["ok"] for r in records) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    series = sub.add_parser("series")
    series.add_argument("log", type=Path)
    series.add_argument("exit_code", type=int)
    series.add_argument("label")
    series.add_argument("results", type=Path)
    total = sub.add_parser("total")
    total.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    if args.command == "series":
        return cmd_series(args.log, args.exit_code, args.label, args.results)
    return cmd_total(args.results)


if __name__ == "__main__":
    sys.exit(main())
