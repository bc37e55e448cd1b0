"""Running one command and looking at what it left: the harness's building blocks.

:func:`run_child` times a fresh process and reads its own peak RSS
(through ``launch.py``);
:class:`Row` is one line of the results table; listings (key -> size, MD5)
describe a tree, a ``STATIC_ROOT`` or a bucket so they can be compared;
:class:`Bucket` talks to moto directly, not through the latency proxy.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ceiling import CREDENTIALS, REGION, content_type, static_files

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).resolve().with_name("launch.py")
#: The sync record collectstatic-plus keeps in the destination; not a static file.
RECORD_NAME = ".collectstatic-plus.json"
CONTENT_TYPE_SAMPLE = 10  # objects per extension whose Content-Type is checked
#: How request kinds are listed; LIST is a GET with ``list-type=2``.
REQUEST_ORDER = ["LIST", "HEAD", "GET", "PUT", "DELETE", "POST"]

# name -> (size, md5 hex)
Listing = dict[str, tuple[int, str]]


@dataclass
class Row:
    scenario: str  # e.g. "s3 cold upload", "local no-change" (see scenarios.py)
    command: str  # "stock", "ours" or "ceiling"
    workers: str  # "-" for stock, "default" for a bare --parallel, "serial"
    wall_s: float = 0.0
    command_s: float | None = None  # the command alone, start-up excluded
    rss_mb: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    copied: int | None = None  # from collectstatic's summary line
    unmodified: int | None = None
    check: str = ""
    walls: list[float] = field(default_factory=list)
    vs_stock: float | None = None  # stock wall / this wall
    command_vs_stock: float | None = None  # the same for the command alone
    vs_ceiling: float | None = None  # this wall / ceiling wall
    rss_vs_stock: float | None = None
    reused: bool = False  # taken from an earlier run (--stock-from)

    @property
    def ok(self) -> bool:
        return self.check == "ok"

    @property
    def storage(self) -> str:
        return self.scenario.split()[0]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass
class Child:
    returncode: int
    wall_s: float
    rss_mb: float
    output: str
    command_s: float | None = None

    @property
    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_child(argv: list[str], env: dict[str, str], timeout: float) -> Child:
    """Run a process to completion; its wall time and its own peak RSS.

    It runs under ``launch.py``, which measures both (see there why the
    harness cannot read the RSS itself). If the launcher leaves no result (it
    was killed at the timeout), the wall time is the harness's and the RSS 0.
    """
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch, "result.json")
        timing = Path(scratch, "command_s")
        env = {**env, "BENCH_COMMAND_TIMING": str(timing)}
        launcher = [sys.executable, str(LAUNCHER), str(result), "--", *argv]
        with open(Path(scratch, "output"), "w+b") as output:
            start = time.perf_counter()
            process = subprocess.Popen(
                launcher,
                env=env,
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killed with the command
            )
            timer = threading.Timer(timeout, kill_group, [process.pid])
            timer.start()
            try:
                returncode = process.wait()
                wall = time.perf_counter() - start
            finally:
                timer.cancel()
                if process.returncode is None:  # interrupted: leave nothing running
                    kill_group(process.pid)
                    process.wait()
            output.seek(0)
            text = output.read().decode(errors="replace")
        if not result.exists():
            return Child(returncode, wall, 0.0, text)
        measured = json.loads(result.read_text())
        command = float(timing.read_text()) if timing.exists() else None
    # ru_maxrss is in KiB on Linux.
    rss_mb = measured["maxrss_kb"] / 1024
    return Child(returncode, measured["wall_s"], rss_mb, text, command)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def child_env(**bench: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    # Cache bytecode as an installed package does (run.py compiles it first):
    # otherwise ours would be compiled from source in every run, and Django not.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    env.update({f"BENCH_{k.upper()}": v for k, v in bench.items()})
    return env


def collectstatic_argv(workers: str | None) -> list[str]:
    """``-v1`` so the summary line says how many files were copied."""
    argv = [sys.executable, "-m", "benchmarks.timed", "collectstatic", "--noinput"]
    argv.append("-v1")
    if workers == "default":
        argv.append("--parallel")
    elif workers not in (None, "serial"):
        argv += ["--parallel", workers]
    return argv


SUMMARY_COPIED = re.compile(r"(\d+) static files? (?:copied|symlinked)")
SUMMARY_UNMODIFIED = re.compile(r", (\d+) unmodified")


def parse_summary(line: str) -> tuple[int | None, int | None]:
    """(copied, unmodified) from collectstatic's last line, None if absent."""
    copied = SUMMARY_COPIED.search(line)
    if copied is None:
        return None, None
    unmodified = SUMMARY_UNMODIFIED.search(line)
    return int(copied.group(1)), int(unmodified.group(1)) if unmodified else 0


def failed(child: Child) -> str:
    """ "" if the process succeeded, else a one-line FAILED message."""
    if child.returncode == 0:
        return ""
    last = child.last_line or "no output"
    return f"FAILED (exit {child.returncode}): {last[:200]}"


def request_kinds(lines: list[str]) -> dict[str, int]:
    """Requests by kind, from the server's ``"METHOD /path?query"`` lines."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        method, _, target = line.partition(" ")
        _, _, query = target.partition("?")
        is_list = method == "GET" and "list-type=2" in query.split("&")
        counts["LIST" if is_list else method] += 1
    known = [kind for kind in REQUEST_ORDER if kind in counts]
    return {k: counts[k] for k in known + sorted(counts.keys() - set(known))}


def local_listing(tree: Path) -> Listing:
    """What collectstatic would collect from ``tree`` (dot files, so the
    record, are skipped)."""
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
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )

    def create(self, name: str) -> None:
        self.client.create_bucket(Bucket=name)

    def listing(self, name: str) -> Listing:
        """Every object but the sync record: (size, ETag), the MD5 for a PUT."""
        result: Listing = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                result[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
        result.pop(RECORD_NAME, None)
        return result

    def read(self, name: str, key: str) -> bytes | None:
        """An object's bytes, None if there is no such key."""
        try:
            body = self.client.get_object(Bucket=name, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        data: bytes = body.read()
        return data

    def wrong_content_types(self, name: str, keys: list[str]) -> list[str]:
        wrong = []
        for key in keys:
            got = self.client.head_object(Bucket=name, Key=key)["ContentType"]
            if got != content_type(key):
                wrong.append(f"{key}: {got}")
        return wrong

    def empty(self, name: str) -> None:
        keys = [
            item["Key"]
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=name
            )
            for item in page.get("Contents", [])
        ]
        for start in range(0, len(keys), 1000):
            batch: list[Any] = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=name, Delete={"Objects": batch})

    def delete(self, name: str) -> None:
        self.empty(name)
        self.client.delete_bucket(Bucket=name)
