"""Benchmark Django's collectstatic against ``collectstatic --parallel``.

``python -m benchmarks.run [--files 5000] [--rtt-ms 20] [--workers 8,16,32,64]
[--scenarios cold,nochange,changed,fresh] [--storages s3,local]`` (``--quick``
for a smoke test). See benchmarks/README.md for what each scenario means and
benchmarks/scenarios.py for how they run. Every command runs as a fresh
process; the harness measures its wall time, the command's own time and peak
RSS, counts the requests moto answered and checks what landed in the bucket
or STATIC_ROOT. Results go to stdout and to benchmarks/results/NAME.md and
NAME.json (``--name``, default ``latest``).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.make_tree import make_tree
from benchmarks.measure import Row, listing_digest
from benchmarks.report import markdown, ratios
from benchmarks.scenarios import (
    SCENARIO_ORDER,
    STEP_OF,
    STEPS,
    TITLES,
    WORK,
    Harness,
    empty_trash,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
#: How peak RSS was measured; results without it counted the harness's RSS too.
RSS_METHOD = "own ru_maxrss via launch.py"


def versions() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "missing"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--", "collectstatic_plus"):
        commit += " + uncommitted changes in collectstatic_plus/"
    return {
        "machine": f"{platform.machine()}, nproc {os.cpu_count()}",
        "python": platform.python_version(),
        "django": version("Django"),
        "boto3": version("boto3"),
        "django-storages": version("django-storages"),
        "moto": version("moto"),
        "commit": commit or "unknown",
    }


def prepare_tree(args: argparse.Namespace) -> Path:
    if args.tree is not None:
        return Path(args.tree).resolve()
    tree = WORK / f"tree-{args.files}-seed{args.seed}"
    done = WORK / f"tree-{args.files}-seed{args.seed}.done"
    if not done.exists():
        print(f"generating {args.files} files in {tree}", file=sys.stderr)
        make_tree(tree, args.files, args.seed)
        done.touch()
    return tree


def reuse_stock(
    path: Path, meta: dict[str, Any], args: argparse.Namespace
) -> list[Row]:
    """Stock rows of the selected scenarios from an earlier results JSON, if it
    measured the same thing."""
    old = json.loads(path.read_text())
    for key in ("files", "total bytes", "rtt ms", "tree digest"):
        if old["meta"].get(key) != meta[key]:
            raise SystemExit(f"--stock-from {path}: {key} differs, cannot reuse")
    fields = Row.__dataclass_fields__
    rows = [
        Row(**{k: v for k, v in r.items() if k in fields})
        for r in old["rows"]
        if r["command"] == "stock"
        and STEP_OF.get(r["scenario"]) in args.scenarios
        and r["scenario"].split()[0] in args.storages
    ]
    for row in rows:
        row.reused = True
        row.vs_stock = row.vs_ceiling = row.rss_vs_stock = None
    args.stock_digest = old["meta"].get("stock s3 digest")
    if rows and old["meta"].get("peak rss") != RSS_METHOD:
        print(
            f"warning: {path} predates launch.py; its peak RSS figures may "
            "include the harness's own",
            file=sys.stderr,
        )
    return rows


def workers_list(text: str) -> list[str]:
    return [w for w in text.split(",") if w]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, help="default 5000 (--quick: 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tree", type=Path, help="collect this folder instead")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument(
        "--scenarios",
        default="cold,nochange,changed,fresh",
        help=(
            "any of cold,nochange,changed,fresh,container (default: all but container)"
        ),
    )
    parser.add_argument(
        "--workers",
        help="S3 cold --parallel N list, default 8,16,32,64 (--quick: 8)",
    )
    parser.add_argument(
        "--sync-workers",
        help="S3 --parallel N for the incremental scenarios, default 32 (--quick: 8)",
    )
    parser.add_argument(
        "--local-workers",
        default="default,8",
        help="local cold --parallel N ('default': a bare --parallel, 'serial': none)",
    )
    parser.add_argument(
        "--local-sync-workers",
        default="serial,default",
        help="local workers for the incremental scenarios",
    )
    parser.add_argument(
        "--storages",
        default="s3,local",
        help="any of s3,local,s3-manifest,local-manifest (default: s3,local)",
    )
    parser.add_argument(
        "--name",
        default="latest",
        help="results go to benchmarks/results/NAME.md and NAME.json",
    )
    parser.add_argument("--repeat", type=int, default=1, help="median of N runs")
    parser.add_argument("--timeout", type=float, default=1800, help="per process, s")
    parser.add_argument(
        "--stock-from",
        type=Path,
        help="reuse stock rows from an earlier results .json (same tree and rtt)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 300 files, workers 8"
    )
    args = parser.parse_args(argv)
    if args.files is None:
        args.files = 300 if args.quick else 5000
    args.workers = workers_list(args.workers or ("8" if args.quick else "8,16,32,64"))
    args.sync_workers = workers_list(args.sync_workers or ("8" if args.quick else "32"))
    args.local_workers = workers_list(args.local_workers)
    args.local_sync_workers = workers_list(args.local_sync_workers)
    args.storages = set(args.storages.split(","))
    args.scenarios = set(args.scenarios.split(","))
    if unknown := args.scenarios - set(STEPS):
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}")
    if unknown := args.storages - set(TITLES):
        parser.error(f"unknown storage(s) {', '.join(sorted(unknown))}")
    args.stock_digest = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for package in ("collectstatic_plus", "benchmarks", "tests"):
        compileall.compile_dir(REPO_ROOT / package, quiet=1)
    tree = prepare_tree(args)
    harness = Harness(args, tree)
    meta: dict[str, Any] = {
        **versions(),
        "files": len(harness.expected),
        "total bytes": sum(size for size, _ in harness.expected.values()),
        "rtt ms": args.rtt_ms,
        "tree": str(tree),
        "tree digest": listing_digest(harness.expected)[:16],
        "scenarios": ",".join(s for s in STEPS if s in args.scenarios),
        "changed files": len(harness.work.to_change),
        "s3 workers (cold)": ",".join(args.workers),
        "s3 workers (incremental)": ",".join(args.sync_workers),
        "local workers (cold)": ",".join(args.local_workers),
        "local workers (incremental)": ",".join(args.local_sync_workers),
        "repeat": args.repeat,
        "peak rss": RSS_METHOD,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(
        f"{meta['files']} files, {meta['total bytes'] / 1e6:.1f} MB, "
        f"rtt {args.rtt_ms} ms",
        file=sys.stderr,
    )
    if args.stock_from is not None:
        harness.rows += reuse_stock(args.stock_from, meta, args)

    try:
        for storage in TITLES:
            if storage not in args.storages:
                continue
            reused = {
                STEP_OF[r.scenario]
                for r in harness.rows
                if r.reused and r.storage == storage
            }
            harness.run_storage(storage, args.scenarios - reused)
    finally:
        empty_trash()
    if harness.stock_s3 is not None:
        meta["stock s3 digest"] = listing_digest(harness.stock_s3)
    elif args.stock_digest:
        meta["stock s3 digest"] = args.stock_digest

    rows = sorted(harness.rows, key=lambda r: SCENARIO_ORDER.index(r.scenario))
    ratios(rows)
    report = markdown(meta, rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(report)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    print(report)
    bad = [r for r in rows if not r.ok]
    for r in bad:
        print(f"!!! {r.scenario} {r.command} {r.workers}: {r.check}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
