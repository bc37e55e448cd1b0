"""The results table and the targets, as markdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.measure import Row
from benchmarks.scenarios import STEP_OF, TITLES

#: What ours should copy in each incremental step (None: the changed files).
EXPECTED_COPIES = {"nochange": 0, "changed": None, "fresh": 0}

#: The tree size every target is set for (the default tree). Start-up time
#: and round trips per file weigh differently in a smaller tree (``--quick``:
#: 300 files), so there the figures are shown and not judged.
TARGET_FILES = 5000


def ratios(rows: list[Row]) -> None:
    stock = {r.scenario: r for r in rows if r.command == "stock" and r.ok}
    ceiling = {
        (r.scenario, r.workers): r for r in rows if r.command == "ceiling" and r.ok
    }
    for row in rows:
        if not row.ok:
            continue
        if (base := stock.get(row.scenario)) is not None and row is not base:
            row.vs_stock = base.wall_s / row.wall_s
            if base.command_s and row.command_s:
                row.command_vs_stock = base.command_s / row.command_s
            row.rss_vs_stock = row.rss_mb / base.rss_mb
        if (
            row.command == "ours"
            and (top := ceiling.get((row.scenario, row.workers))) is not None
        ):
            row.vs_ceiling = row.wall_s / top.wall_s


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def requests_cell(row: Row) -> str:
    if not row.requests:
        return "-"
    kinds = ", ".join(f"{kind} {n}" for kind, n in row.requests.items())
    return f"{kinds} (= {row.total_requests})" if len(row.requests) > 1 else kinds


def optional(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| scenario | command | workers | wall s | stock/this | command s "
        "| stock/this (command) | this/ceiling "
        "| requests | copied | unmodified | peak RSS MB | RSS vs stock | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.command}{' (reused)' if r.reused else ''} "
            f"| {r.workers} | {r.wall_s:.2f} "
            f"| {fmt(r.vs_stock, 1, 'x')} | {fmt(r.command_s)} "
            f"| {fmt(r.command_vs_stock, 1, 'x')} "
            f"| {fmt(r.vs_ceiling)} | {requests_cell(r)} "
            f"| {optional(r.copied)} | {optional(r.unmodified)} "
            f"| {r.rss_mb:.1f} | {fmt(r.rss_vs_stock)} | {r.check} |"
        )
    return lines


def label(row: Row) -> str:
    if row.workers == "serial":
        return "serial"
    if row.workers == "default":
        return "bare --parallel"
    return f"--parallel {row.workers}"


def verdict(
    row: Row, passed: list[bool], details: str, stock: Row | None, judged: bool
) -> str:
    if not judged:
        status = "not judged at this size"
    else:
        status = "PASS" if row.ok and all(passed) else "FAIL"
    note = ""
    if stock is not None and stock.reused:
        note = "; stock reused from an earlier run, not this one"
    return f"- {label(row)}: {status} (check {row.check}, {details}{note})"


def target(text: str, files: int = TARGET_FILES) -> str:
    """A target's heading: what it asks, and for which tree size."""
    return f"{text.rstrip('.')} (for the {files:,}-file tree)."


def size_note(files: int) -> list[str]:
    """What a run of another size than the targets' is judged on."""
    if files == TARGET_FILES:
        return []
    return [
        f"This tree has {files:,} files; the targets are set for "
        f"{TARGET_FILES:,} (start-up and round trips per file weigh differently "
        "in another size), so their figures are shown and not judged.",
        "",
    ]


def targets(rows: list[Row], changed_files: int, files: int) -> list[str]:
    stock = {r.scenario: r for r in rows if r.command == "stock"}
    judged = files == TARGET_FILES

    def ours(storage: str, step: str) -> list[Row]:
        title = TITLES[storage][step]
        return [r for r in rows if r.scenario == title and r.command == "ours"]

    lines: list[str] = []
    if cold := ours("s3", "cold"):
        lines += [
            target(
                "S3 cold upload, --parallel N: within 1.3x of the ceiling, at "
                "least 10x faster than stock, same keys and bytes, peak RSS at "
                "most 1.5x stock's."
            ),
            "",
        ]
        for r in cold:
            passed = [
                r.vs_ceiling is not None and r.vs_ceiling <= 1.3,
                r.vs_stock is not None and r.vs_stock >= 10,
                r.rss_vs_stock is not None and r.rss_vs_stock <= 1.5,
            ]
            details = (
                f"ceiling ratio {fmt(r.vs_ceiling)}, speedup {fmt(r.vs_stock, 1)}x, "
                f"RSS ratio {fmt(r.rss_vs_stock)}"
            )
            lines.append(verdict(r, passed, details, stock.get(r.scenario), judged))
        lines.append("")
    if nochange := ours("s3", "nochange"):
        lines += [
            target(
                "S3 no-change re-run: at least 50x faster than stock in the same "
                "run, fewer than 10 requests."
            ),
            "",
        ]
        for r in nochange:
            passed = [r.vs_stock is not None and r.vs_stock >= 50]
            passed.append(r.total_requests < 10)
            details = f"speedup {fmt(r.vs_stock, 1)}x, {r.total_requests} requests"
            lines.append(verdict(r, passed, details, stock.get(r.scenario), judged))
        lines.append("")
    if nochange := ours("local", "nochange"):
        lines += [target("Local no-change re-run: at least 3x faster than stock."), ""]
        for r in nochange:
            passed = [r.vs_stock is not None and r.vs_stock >= 3]
            details = (
                f"speedup {fmt(r.vs_stock, 1)}x; the command alone, start-up "
                f"excluded: {fmt(r.command_vs_stock, 1)}x"
            )
            lines.append(verdict(r, passed, details, stock.get(r.scenario), judged))
        lines.append("")
    lines += manifest_targets(rows, ours, stock, judged)
    if lines:
        lines = size_note(files) + lines
    lines += copies(rows, changed_files)
    return lines


#: (storage, step, minimum speed-up over stock) for the manifest storages.
MANIFEST_TARGETS = [
    ("s3-manifest", "cold", 10),
    ("s3-manifest", "nochange", 100),
    ("local-manifest", "nochange", 5),
    ("local-manifest", "changed", 5),
    ("local-manifest", "cold", 1.5),
    ("local-whitenoise", "changed", 10),
    ("local-whitenoise", "container", 10),
    ("local-whitenoise", "cold", 1.2),
    ("local", "cold", 1.0),
]


def manifest_targets(
    rows: list[Row],
    ours: Callable[[str, str], list[Row]],
    stock: dict[str, Row],
    judged: bool,
) -> list[str]:
    lines: list[str] = []
    for storage, step, speedup in MANIFEST_TARGETS:
        if not (found := ours(storage, step)):
            continue
        title = TITLES[storage][step]
        lines += [target(f"{title}: at least {speedup}x faster than stock."), ""]
        for r in found:
            passed = [r.vs_stock is not None and r.vs_stock >= speedup]
            details = f"speedup {fmt(r.vs_stock, 1)}x"
            if r.command_vs_stock is not None:
                details += f" (the command alone: {fmt(r.command_vs_stock, 1)}x)"
            if r.requests:
                details += f", {r.total_requests} requests"
            lines.append(verdict(r, passed, details, stock.get(r.scenario), judged))
        lines.append("")
    return lines


def copies(rows: list[Row], changed_files: int) -> list[str]:
    """Whether ours copied exactly what changed (not a target, a sanity check)."""
    wrong = []
    checked = 0
    for r in rows:
        step = STEP_OF.get(r.scenario)
        if r.command != "ours" or step not in EXPECTED_COPIES:
            continue
        expected = EXPECTED_COPIES[step]
        expected = changed_files if expected is None else expected
        checked += 1
        if r.copied != expected:
            wrong.append(
                f"  - {r.scenario}, {label(r)}: copied {optional(r.copied)}, "
                f"expected {expected}"
            )
    if not checked:
        return []
    head = (
        f"Files copied by ours (expected: 0 on no-change, {changed_files} on 1% "
        "changed, 0 on fresh checkout): "
    )
    return [head + ("as expected" if not wrong else "NOT as expected"), *wrong]


def markdown(meta: dict[str, Any], rows: list[Row]) -> str:
    lines = ["# collectstatic benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["", *table(rows), "", "## Targets", ""]
    lines += targets(rows, int(meta.get("changed files", 0)), int(meta["files"]))
    return "\n".join(lines).rstrip("\n") + "\n"
