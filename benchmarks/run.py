"""Benchmark Django's collectstatic against ``collectstatic --parallel``.

``python -m benchmarks.run [--files 5000] [--rtt-ms 20] [--workers 8,16,32,64]``
(``--quick`` for a smoke test). See benchmarks/README.md for what each
scenario means. Every command runs as a fresh process; the harness measures its
wall time and peak RSS (``os.wait4``), counts the requests moto answered and
checks what landed in the bucket or STATIC_ROOT. Results go to stdout and to
benchmarks/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.ceiling import CREDENTIALS, REGION, content_type, static_files
from benchmarks.make_tree import make_tree
from tests.servers.latency_proxy import LatencyProxy
from tests.servers.s3 import S3Server

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / ".work"
RESULTS = REPO_ROOT / "benchmarks" / "results"
CONTENT_TYPE_SAMPLE = 10  # objects per extension whose Content-Type is checked

# name -> {key: (size, md5 hex)}
Listing = dict[str, tuple[int, str]]


@dataclass
class Row:
    scenario: str  # "s3 cold upload" or "local cold copy"
    command: str  # "stock", "ours" or "ceiling"
    workers: str  # "-" for stock, "default" for a bare --parallel
    wall_s: float = 0.0
    rss_mb: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    check: str = ""
    walls: list[float] = field(default_factory=list)
    vs_stock: float | None = None  # stock wall / this wall
    vs_ceiling: float | None = None  # this wall / ceiling wall
    rss_vs_stock: float | None = None
    reused: bool = False  # taken from an earlier run (--stock-from)

    @property
    def ok(self) -> bool:
        return self.check == "ok"


@dataclass
class Child:
    returncode: int
    wall_s: float
    rss_mb: float
    output: str


def run_child(argv: list[str], env: dict[str, str], timeout: float) -> Child:
    """Run a process to completion; its wall time and its own peak RSS."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        status = None
        try:
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
        finally:
            timer.cancel()
            if status is None:  # interrupted: do not leave it running
                process.kill()
                process.wait()
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    # ru_maxrss is in KiB on Linux.
    return Child(process.returncode, wall, usage.ru_maxrss / 1024, text)


def child_env(**bench: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    env.update({f"BENCH_{k.upper()}": v for k, v in bench.items()})
    return env


def collectstatic_argv(workers: str | None) -> list[str]:
    argv = [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"]
    if workers == "default":
        argv.append("--parallel")
    elif workers is not None:
        argv += ["--parallel", workers]
    return argv


def local_listing(tree: Path) -> Listing:
    return {
        key: (path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest())
        for key, path in static_files(tree)
    }


def compare(got: Listing, expected: Listing, what: str) -> list[str]:
    """Human-readable differences between two listings (empty if equal)."""
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    changed = sorted(k for k in got.keys() & expected.keys() if got[k] != expected[k])
    problems = []
    for label, keys in (("missing", missing), ("extra", extra), ("differ", changed)):
        if keys:
            problems.append(f"{len(keys)} {label} vs {what} (e.g. {keys[0]})")
    return problems


def content_type_sample(listing: Listing) -> list[str]:
    """A few keys of each extension (Content-Type follows the extension)."""
    by_extension: dict[str, list[str]] = {}
    for key in sorted(listing):
        by_extension.setdefault(Path(key).suffix, []).append(key)
    return [k for keys in by_extension.values() for k in keys[:CONTENT_TYPE_SAMPLE]]


def listing_digest(listing: Listing) -> str:
    return hashlib.sha256(json.dumps(sorted(listing.items())).encode()).hexdigest()


class Bucket:
    """Bucket helpers, talking to moto directly (not through the proxy)."""

    def __init__(self, endpoint: str) -> None:
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            config=Config(max_pool_connections=16),
            **CREDENTIALS,
        )

    def create(self, name: str) -> None:
        self.client.create_bucket(Bucket=name)

    def listing(self, name: str) -> Listing:
        result: Listing = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                result[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
        return result

    def wrong_content_types(self, name: str, keys: list[str]) -> list[str]:
        wrong = []
        for key in keys:
            got = self.client.head_object(Bucket=name, Key=key)["ContentType"]
            if got != content_type(key):
                wrong.append(f"{key}: {got}")
        return wrong

    def delete(self, name: str) -> None:
        keys = list(self.listing(name))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=name, Delete={"Objects": batch})
        self.client.delete_bucket(Bucket=name)


class Harness:
    def __init__(self, args: argparse.Namespace, tree: Path) -> None:
        self.args = args
        self.tree = tree
        self.expected = local_listing(tree)
        self.rows: list[Row] = []
        self.stock_s3: Listing | None = None
        self.runs = 0

    def measure(self, row: Row, run: Callable[[], tuple[Child, str]]) -> Row:
        """Run ``run`` --repeat times; keep the median wall and RSS."""
        children: list[Child] = []
        checks: list[str] = []
        for _ in range(self.args.repeat):
            child, check = run()
            children.append(child)
            checks.append(check)
            if check != "ok":
                break
        row.walls = [round(c.wall_s, 3) for c in children]
        row.wall_s = statistics.median(c.wall_s for c in children)
        row.rss_mb = statistics.median(c.rss_mb for c in children)
        row.check = next((c for c in checks if c != "ok"), "ok")
        print(
            f"  {row.scenario:16} {row.command:8} {row.workers:>7}: "
            f"{row.wall_s:8.2f} s  {row.rss_mb:6.1f} MB  {row.check}",
            file=sys.stderr,
            flush=True,
        )
        self.rows.append(row)
        return row

    @staticmethod
    def failed(child: Child) -> str:
        if child.returncode == 0:
            return ""
        lines = [line for line in child.output.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        return f"FAILED (exit {child.returncode}): {last[:200]}"

    # S3

    def s3_run(
        self, s3: S3Server, bucket: Bucket, endpoint: str, command: str, workers: str
    ) -> Row:
        row = Row("s3 cold upload", command, workers)

        def run() -> tuple[Child, str]:
            self.runs += 1
            name = f"bench-{self.runs}-{command}"
            bucket.create(name)
            try:
                s3.reset_requests()
                if command == "ceiling":
                    argv = [sys.executable, "-m", "benchmarks.ceiling"]
                    argv += ["--tree", str(self.tree), "--endpoint", endpoint]
                    argv += ["--bucket", name, "--workers", workers]
                    env = child_env()
                else:
                    parallel = None if command == "stock" else workers
                    argv = collectstatic_argv(parallel)
                    env = child_env(
                        tree=str(self.tree),
                        storage="s3",
                        s3_endpoint=endpoint,
                        s3_bucket=name,
                        stock="1" if command == "stock" else "0",
                    )
                child = run_child(argv, env, self.args.timeout)
                row.requests = dict(sorted(s3.counts().items()))
                return child, self.failed(child) or self.check_bucket(
                    bucket, name, command
                )
            finally:
                bucket.delete(name)

        return self.measure(row, run)

    def check_bucket(self, bucket: Bucket, name: str, command: str) -> str:
        listing = bucket.listing(name)
        problems = compare(listing, self.expected, "the tree")
        if command == "stock":
            self.stock_s3 = listing
        elif self.stock_s3 is not None:
            problems += compare(listing, self.stock_s3, "stock's bucket")
        elif (
            self.args.stock_digest and listing_digest(listing) != self.args.stock_digest
        ):
            problems.append("listing differs from the reused stock run's")
        wrong = bucket.wrong_content_types(name, content_type_sample(listing))
        if wrong:
            problems.append(f"{len(wrong)} wrong Content-Type (e.g. {wrong[0]})")
        return "MISMATCH: " + "; ".join(problems) if problems else "ok"

    # Local

    def local_run(self, command: str, workers: str) -> Row:
        row = Row("local cold copy", command, workers)
        root = WORK / "static-root"

        def run() -> tuple[Child, str]:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            try:
                env = child_env(
                    tree=str(self.tree),
                    storage="local",
                    static_root=str(root),
                    stock="1" if command == "stock" else "0",
                )
                parallel = None if command == "stock" else workers
                child = run_child(collectstatic_argv(parallel), env, self.args.timeout)
                if failure := self.failed(child):
                    return child, failure
                problems = compare(local_listing(root), self.expected, "the tree")
                return child, "MISMATCH: " + "; ".join(problems) if problems else "ok"
            finally:
                shutil.rmtree(root, ignore_errors=True)

        return self.measure(row, run)


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
            row.rss_vs_stock = row.rss_mb / base.rss_mb
        if (
            row.command == "ours"
            and (top := ceiling.get((row.scenario, row.workers))) is not None
        ):
            row.vs_ceiling = row.wall_s / top.wall_s


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def markdown(meta: dict[str, Any], rows: list[Row]) -> str:
    lines = ["# collectstatic benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += [
        "",
        "| scenario | command | workers | wall s | stock/this | this/ceiling "
        "| requests | peak RSS MB | RSS vs stock | check |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        requests = ", ".join(f"{m} {n}" for m, n in r.requests.items()) or "-"
        lines.append(
            f"| {r.scenario} | {r.command}{' (reused)' if r.reused else ''} "
            f"| {r.workers} | {r.wall_s:.2f} "
            f"| {fmt(r.vs_stock, 1, 'x')} | {fmt(r.vs_ceiling)} | {requests} "
            f"| {r.rss_mb:.1f} | {fmt(r.rss_vs_stock)} | {r.check} |"
        )
    lines += ["", "Targets (S3, --parallel): within 1.3x of the ceiling, at least 10x"]
    lines += [
        "faster than stock, same keys and bytes, peak RSS at most 1.5x stock's.",
        "",
    ]
    for r in rows:
        if r.scenario == "s3 cold upload" and r.command == "ours":
            verdicts = [
                r.ok,
                r.vs_ceiling is not None and r.vs_ceiling <= 1.3,
                r.vs_stock is not None and r.vs_stock >= 10,
                r.rss_vs_stock is not None and r.rss_vs_stock <= 1.5,
            ]
            status = "PASS" if all(verdicts) else "FAIL"
            lines.append(
                f"- --parallel {r.workers}: {status} (check {r.check}, "
                f"ceiling ratio {fmt(r.vs_ceiling)}, speedup {fmt(r.vs_stock, 1)}x, "
                f"RSS ratio {fmt(r.rss_vs_stock)})"
            )
    return "\n".join(lines) + "\n"


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
        return args.tree.resolve()
    tree = WORK / f"tree-{args.files}-seed{args.seed}"
    done = WORK / f"tree-{args.files}-seed{args.seed}.done"
    if not done.exists():
        print(f"generating {args.files} files in {tree}", file=sys.stderr)
        make_tree(tree, args.files, args.seed)
        done.touch()
    return tree


def reuse_stock(path: Path, meta: dict[str, Any], storages: set[str]) -> list[Row]:
    """Stock rows from an earlier results JSON, if it measured the same thing."""
    old = json.loads(path.read_text())
    for key in ("files", "total bytes", "rtt ms", "tree digest"):
        if old["meta"].get(key) != meta[key]:
            raise SystemExit(f"--stock-from {path}: {key} differs, cannot reuse")
    fields = Row.__dataclass_fields__
    rows = [
        Row(**{k: v for k, v in r.items() if k in fields})
        for r in old["rows"]
        if r["command"] == "stock" and r["scenario"].split()[0] in storages
    ]
    for row in rows:
        row.reused = True
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, help="default 5000 (--quick: 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tree", type=Path, help="collect this folder instead")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument(
        "--workers", help="S3 --parallel N list, default 8,16,32,64 (--quick: 8)"
    )
    parser.add_argument(
        "--local-workers",
        default="default,8",
        help="local --parallel N ('default' runs a bare --parallel)",
    )
    parser.add_argument("--storages", default="s3,local", help="s3, local or both")
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
    if args.workers is None:
        args.workers = "8" if args.quick else "8,16,32,64"
    args.workers = [w for w in args.workers.split(",") if w]
    args.local_workers = [w for w in args.local_workers.split(",") if w]
    args.storages = set(args.storages.split(","))
    args.stock_digest = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tree = prepare_tree(args)
    harness = Harness(args, tree)
    meta: dict[str, Any] = {
        **versions(),
        "files": len(harness.expected),
        "total bytes": sum(size for size, _ in harness.expected.values()),
        "rtt ms": args.rtt_ms,
        "tree": str(tree),
        "tree digest": listing_digest(harness.expected)[:16],
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(
        f"{meta['files']} files, {meta['total bytes'] / 1e6:.1f} MB, "
        f"rtt {args.rtt_ms} ms",
        file=sys.stderr,
    )
    reused: list[Row] = []
    if args.stock_from is not None:
        reused = reuse_stock(args.stock_from, meta, args.storages)
        harness.rows += reused
        old = json.loads(args.stock_from.read_text())
        args.stock_digest = old["meta"].get("stock s3 digest")

    if "s3" in args.storages:
        s3 = S3Server().start()
        proxy = None
        try:
            proxy = LatencyProxy(s3.port, args.rtt_ms / 2).start()
            bucket = Bucket(s3.endpoint_url)
            endpoint = proxy.endpoint_url
            if not any(r.scenario == "s3 cold upload" for r in reused):
                harness.s3_run(s3, bucket, endpoint, "stock", "-")
            for workers in args.workers:
                harness.s3_run(s3, bucket, endpoint, "ceiling", workers)
                harness.s3_run(s3, bucket, endpoint, "ours", workers)
        finally:
            if proxy is not None:
                proxy.stop()
            s3.stop()
    if harness.stock_s3 is not None:
        meta["stock s3 digest"] = listing_digest(harness.stock_s3)
    elif args.stock_digest:
        meta["stock s3 digest"] = args.stock_digest

    if "local" in args.storages:
        if not any(r.scenario == "local cold copy" for r in reused):
            harness.local_run("stock", "-")
        for workers in args.local_workers:
            harness.local_run("ours", workers)

    order = {"s3 cold upload": 0, "local cold copy": 1}
    rows = sorted(harness.rows, key=lambda r: order[r.scenario])
    ratios(rows)
    report = markdown(meta, rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    print(report)
    bad = [r for r in rows if not r.ok]
    for r in bad:
        print(f"!!! {r.scenario} {r.command} {r.workers}: {r.check}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
