"""Peak RSS against file count: does ``collectstatic --parallel`` hold only
per-file bookkeeping, not file contents or queued work?

``python -m benchmarks.memory [--files 5000,50000] [--storages local,s3]
[--workers 32]`` generates a tree per file count (cached in
``benchmarks/.work/`` like run.py's) and runs, each as a fresh process under
``launch.py`` (its own peak RSS and wall time, see measure.run_child):

- stock collectstatic on an empty destination (``BENCH_STOCK=1``);
- ours with ``--parallel N`` on an empty destination, then again with nothing
  changed on the destination that run left;
- "the file list itself": a baseline process that sets Django up with the same
  settings and keeps in memory only what any collector must hold per file: the
  finders' ``(path, storage)`` pairs, and for each an MD5 hex string and the
  size (read in chunks, never whole).

For each (storage, command, scenario) it derives the marginal bytes per file
between the smallest and the largest count, ``(RSS_large - RSS_small) /
(files_large - files_small)``, and sets ours' next to the baseline's: memory
that is flat in file count beyond the file list grows like the baseline, not
like the tree's bytes.

Ours counts as "flat beyond the file list" where its marginal bytes per
file are at most :data:`FLAT` times the baseline's.

S3 runs talk to moto's server directly, without run.py's latency proxy:
memory is measured here, not time, so wall times are only indicative (and the
machine may be shared). Stock on S3 sends a HEAD and a PUT per file, one at a
time, and moto answers each in milliseconds of CPU: on a shared 2-core
machine it took 75-90 s for 5,000 files and 12-15 minutes for 50,000, over
half of the whole run for one figure (about 90 MiB, 13 MiB above its own at
5,000, as on local disk). So at the largest count stock on S3 runs only with
``--stock-s3-largest``; smaller counts always run it.

After every run the destination is compared with the tree (keys, sizes,
MD5s; the sync record is ignored) and a no-change run must copy nothing. A
failed or mismatched run is reported and makes the exit status 1. Results go
to stdout and to benchmarks/results/memory.md and memory.json (``--name``
changes the name).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import (
    Bucket,
    Listing,
    child_env,
    collectstatic_argv,
    compare,
    failed,
    local_listing,
    parse_summary,
    run_child,
)
from benchmarks.run import RESULTS, RSS_METHOD, prepare_tree, versions
from benchmarks.scenarios import (
    S3,
    WORK,
    Destination,
    LocalDestination,
    S3Destination,
    empty_trash,
)
from tests.servers.s3 import S3Server

#: Ours is "flat beyond the file list" if its marginal bytes per file are at
#: most this many times the baseline's.
FLAT = 2.0
#: The baseline, run as ``python -c``: Django set up with the same settings,
#: holding only the finders' (path, storage) pairs, each file's MD5 (hex) and
#: size. Nothing else is imported, so its fixed RSS compares with stock's.
FILE_LIST = """
import hashlib
import django

django.setup()
from django.apps import apps
from django.contrib.staticfiles.finders import get_finders

def digest(storage, path):
    md5, size = hashlib.md5(), 0
    with storage.open(path, "rb") as handle:
        while chunk := handle.read(256 * 1024):
            md5.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), size

ignore = apps.get_app_config("staticfiles").ignore_patterns
held = [
    (path, storage, *digest(storage, path))
    for finder in get_finders()
    for path, storage in finder.list(ignore)
]
print(f"{len(held)} files, {sum(size for *_, size in held)} bytes")
"""


@dataclass
class Run:
    files: int
    storage: str  # "local", "s3", or "-" for the baseline
    command: str  # "stock", "ours" or "file list"
    scenario: str  # "cold", "no-change" or "-"
    wall_s: float = 0.0
    rss_mb: float = 0.0  # MiB, from ru_maxrss
    check: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.storage, self.command, self.scenario


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs: list[Run] = []
        self.serial = itertools.count(1)
        self.server: S3Server | None = None
        self.bucket: Bucket | None = None

    def destination(self, storage: str) -> Destination:
        number = next(self.serial)
        if storage == "local":
            return LocalDestination(WORK / f"memory-root-{number}", "local")
        assert self.server is not None and self.bucket is not None
        s3 = S3(self.server, None, self.bucket)
        return S3Destination(s3, f"memory-{number}", manifest=False)

    def add(self, run: Run, wall_s: float, rss_mb: float, check: str) -> None:
        run.wall_s, run.rss_mb, run.check = wall_s, rss_mb, check
        self.runs.append(run)
        print(
            f"  {run.files:6} {run.storage:5} {run.command:9} {run.scenario:9}: "
            f"{run.wall_s:8.2f} s  {run.rss_mb:7.1f} MiB  {run.check}",
            file=sys.stderr,
            flush=True,
        )

    def baseline(self, tree: Path, expected: Listing) -> None:
        child = run_child(
            [sys.executable, "-c", FILE_LIST],
            child_env(tree=str(tree)),
            self.args.timeout,
        )
        count = f"{len(expected)} files, {sum(s for s, _ in expected.values())} bytes"
        check = failed(child) or (
            "ok" if child.last_line == count else f"MISMATCH: {child.last_line!r}"
        )
        run = Run(len(expected), "-", "file list", "-")
        self.add(run, child.wall_s, child.rss_mb, check)

    def collect(
        self, run: Run, destination: Destination, tree: Path, expected: Listing
    ) -> None:
        stock = run.command == "stock"
        argv = collectstatic_argv(None if stock else self.args.workers)
        child = run_child(argv, destination.env(tree, stock), self.args.timeout)
        problems = []
        if not (problem := failed(child)):
            listing = destination.listing()
            problems = compare(listing, expected, "the tree")
            problems += destination.problems(listing)
            copied, _ = parse_summary(child.last_line)
            if run.scenario == "no-change" and copied != 0:
                problems.append(f"copied {copied} files with nothing changed")
        check = problem or ("MISMATCH: " + "; ".join(problems) if problems else "ok")
        self.add(run, child.wall_s, child.rss_mb, check)

    def storage(self, storage: str, tree: Path, expected: Listing) -> None:
        files = len(expected)
        if storage == "s3" and files == self.args.stock_s3_skip_at:
            print(f"  stock on s3 at {files} files: skipped", file=sys.stderr)
        else:
            destination = self.destination(storage)
            destination.empty()
            try:
                run = Run(files, storage, "stock", "cold")
                self.collect(run, destination, tree, expected)
            finally:
                destination.remove()
        destination = self.destination(storage)
        destination.empty()
        try:
            for scenario in ("cold", "no-change"):
                run = Run(files, storage, "ours", scenario)
                self.collect(run, destination, tree, expected)
        finally:
            destination.remove()

    def run(self) -> dict[int, int]:
        """Every count, storage and command; the tree's bytes per count."""
        sizes = {}
        if "s3" in self.args.storages:
            self.server = S3Server().start()
            self.bucket = Bucket(self.server.endpoint_url)
        try:
            for files in self.args.files:
                tree = prepare_tree(
                    argparse.Namespace(tree=None, files=files, seed=self.args.seed)
                )
                expected = local_listing(tree)
                sizes[len(expected)] = sum(size for size, _ in expected.values())
                self.baseline(tree, expected)
                for storage in self.args.storages:
                    self.storage(storage, tree, expected)
        finally:
            if self.server is not None:
                self.server.stop()
        return sizes


def marginal(runs: list[Run]) -> list[dict[str, Any]]:
    """Bytes of peak RSS per extra file, smallest to largest count, per key."""
    out = []
    by_key: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        if run.check == "ok":
            by_key.setdefault(run.key, []).append(run)
    for (storage, command, scenario), group in by_key.items():
        small = min(group, key=lambda r: r.files)
        large = max(group, key=lambda r: r.files)
        if large.files == small.files:
            continue
        extra = (large.rss_mb - small.rss_mb) * 2**20
        out.append(
            {
                "storage": storage,
                "command": command,
                "scenario": scenario,
                "files": f"{small.files} -> {large.files}",
                "rss_mb": f"{small.rss_mb:.1f} -> {large.rss_mb:.1f}",
                "bytes_per_file": extra / (large.files - small.files),
            }
        )
    return out


def verdict(
    runs: list[Run], margins: list[dict[str, Any]], sizes: dict[int, int]
) -> list[str]:
    """Ours' bytes per file against the file list's and the files' own size,
    and ours' peak RSS at the largest count against the tree's bytes."""
    base = next((m for m in margins if m["command"] == "file list"), None)
    largest = max(sizes)
    total = sizes[largest]
    average = total / largest
    lines = []
    for m in margins:
        if m["command"] != "ours" or base is None:
            continue
        per_file = m["bytes_per_file"]
        ratio = per_file / base["bytes_per_file"]
        flat = "flat" if ratio <= FLAT else "NOT flat"
        lines.append(
            f"- ours, {m['storage']} {m['scenario']}: {per_file:,.0f} B/file = "
            f"{ratio:.1f}x the file list's {base['bytes_per_file']:,.0f} B/file "
            f"({flat} beyond the file list, at most {FLAT}x), "
            f"{per_file / average:.0%} of an average file"
        )
    lines.append(
        f"- largest tree: {largest} files, {total / 2**20:,.0f} MiB "
        f"({average:,.0f} B/file on average)"
    )
    for run in runs:
        if run.files == largest and run.command == "ours" and run.check == "ok":
            lines.append(
                f"- ours, {run.storage} {run.scenario} at {largest} files: peak RSS "
                f"{run.rss_mb:.0f} MiB = {run.rss_mb * 2**20 / total:.0%} of the tree"
            )
    return lines


def markdown(
    meta: dict[str, Any],
    runs: list[Run],
    margins: list[dict[str, Any]],
    lines: list[str],
) -> str:
    out = ["# Peak RSS vs file count", ""]
    out += [f"- {key}: {value}" for key, value in meta.items()]
    out += [
        "",
        "| files | storage | command | scenario | wall s | peak RSS MiB | check |",
        "|---:|---|---|---|---:|---:|---|",
    ]
    for r in runs:
        out.append(
            f"| {r.files} | {r.storage} | {r.command} | {r.scenario} "
            f"| {r.wall_s:.2f} | {r.rss_mb:.1f} | {r.check} |"
        )
    base = {m["storage"]: m for m in margins if m["command"] == "file list"}.get("-")
    out += [
        "",
        "| storage | command | scenario | files | peak RSS MiB | marginal B/file "
        "| vs file list |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for m in margins:
        ratio = (
            "-"
            if base is None
            else f"{m['bytes_per_file'] / base['bytes_per_file']:.1f}x"
        )
        out.append(
            f"| {m['storage']} | {m['command']} | {m['scenario']} | {m['files']} "
            f"| {m['rss_mb']} | {m['bytes_per_file']:,.0f} | {ratio} |"
        )
    return "\n".join([*out, "", *lines, ""])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", default="5000,50000", help="file counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--storages", default="local,s3", help="local, s3 or both")
    parser.add_argument("--workers", default="32", help="ours' --parallel N")
    parser.add_argument("--timeout", type=float, default=3600, help="per process, s")
    parser.add_argument(
        "--name",
        default="memory",
        help="results go to benchmarks/results/NAME.md and NAME.json",
    )
    parser.add_argument(
        "--stock-s3-largest",
        action="store_true",
        help="also run stock on S3 at the largest count (slow)",
    )
    args = parser.parse_args(argv)
    args.files = sorted({int(n) for n in args.files.split(",") if n})
    args.storages = [s for s in args.storages.split(",") if s]
    # The count at which stock on S3 is skipped, if any.
    largest = args.files[-1] if len(args.files) > 1 else None
    args.stock_s3_skip_at = None if args.stock_s3_largest else largest
    if unknown := set(args.storages) - {"local", "s3"}:
        parser.error(f"unknown storage(s) {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta: dict[str, Any] = {
        **versions(),
        "ours": f"--parallel {args.workers}",
        "s3": "moto directly, no latency proxy (memory is measured, not time)",
        "stock on s3 at the largest count": (
            "skipped (slow; --stock-s3-largest runs it)"
            if args.stock_s3_skip_at and "s3" in args.storages
            else "run"
        ),
        "peak rss": RSS_METHOD,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    bench = Bench(args)
    try:
        sizes = bench.run()
    finally:
        empty_trash()
    if (commit := versions()["commit"]) != meta["commit"]:
        meta["commit at the end"] = commit  # the package changed during the run
        print(f"warning: commit {meta['commit']} became {commit}", file=sys.stderr)
    meta["files"] = ", ".join(f"{n} ({b / 2**20:.0f} MiB)" for n, b in sizes.items())
    margins = marginal(bench.runs)
    lines = verdict(bench.runs, margins, sizes)
    report = markdown(meta, bench.runs, margins, lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(report)
    document = {
        "meta": meta,
        "runs": [asdict(r) for r in bench.runs],
        "marginal": margins,
        "verdict": lines,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(document, indent=2) + "\n")
    print(report)
    bad = [r for r in bench.runs if r.check != "ok"]
    for r in bad:
        print(
            f"!!! {r.files} {r.storage} {r.command} {r.scenario}: {r.check}",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
