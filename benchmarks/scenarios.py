"""The scenarios: cold runs, and chains of incremental runs on one destination.

A cold run starts from an empty destination (a new bucket, an empty
``STATIC_ROOT``) and removes it afterwards. A chain is what a deployment sees
run after run: it copies the cached tree to a work tree, populates an empty
destination with a cold run of the command being measured (stock for stock,
ours for ours; that run is the command's cold row), then measures on the same
destination, each as a fresh process:

- ``nochange``: the same tree again;
- ``changed``: every 100th file (1 %) rewritten with new content of about the
  same size (``WorkTree.change``);
- ``fresh``: every file given a new modification time, content unchanged, as
  after a fresh checkout (``WorkTree.touch``);
- ``container``: a fresh container, as a Docker build over an empty
  STATIC_ROOT: its own chain, where a cold run (with the build cache, for
  ours) is followed by the 1 % change and a run on an emptied destination.

After every run the destination is compared with the work tree as it then is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.ceiling import static_files
from benchmarks.measure import (
    Bucket,
    Child,
    Listing,
    Row,
    child_env,
    collectstatic_argv,
    compare,
    content_type_sample,
    failed,
    listing_digest,
    local_listing,
    parse_summary,
    request_kinds,
    run_child,
)
from tests.servers.latency_proxy import LatencyProxy
from tests.servers.s3 import S3Server

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / ".work"
#: Folders the harness is done with, deleted when it ends (see ``discard``).
TRASH = WORK / "trash"


def discard(path: Path) -> None:
    """Move a folder out of the way now and delete it when the harness ends.

    Deleting thousands of files just before a timed run slows every file that
    run creates: ext4 without a journal (this VM's disk) passes over inodes
    freed in the last minute or more when it allocates one
    (``recently_deleted`` in the kernel's ``fs/ext4/ialloc.c``). A cold copy
    measured right after such a delete took 2-10x as long, depending on where
    the new folder landed. Renaming frees no inode.
    """
    if path.exists():
        TRASH.mkdir(parents=True, exist_ok=True)
        path.rename(TRASH / f"{path.name}-{time.monotonic_ns()}")


def empty_trash() -> None:
    """Delete what ``discard`` set aside (after the last timed run)."""
    shutil.rmtree(TRASH, ignore_errors=True)


STEPS = ("cold", "nochange", "changed", "fresh", "container")
TITLES = {
    "s3": {
        "cold": "s3 cold upload",
        "nochange": "s3 no-change",
        "changed": "s3 1% changed",
        "fresh": "s3 fresh checkout",
        "container": "s3 fresh container",
    },
    "local": {
        "cold": "local cold copy",
        "nochange": "local no-change",
        "changed": "local 1% changed",
        "fresh": "local fresh checkout",
        "container": "local fresh container",
    },
    "s3-manifest": {
        "cold": "s3-manifest cold upload",
        "nochange": "s3-manifest no-change",
        "changed": "s3-manifest 1% changed",
        "fresh": "s3-manifest fresh checkout",
        "container": "s3-manifest fresh container",
    },
    "local-manifest": {
        "cold": "local-manifest cold copy",
        "nochange": "local-manifest no-change",
        "changed": "local-manifest 1% changed",
        "fresh": "local-manifest fresh checkout",
        "container": "local-manifest fresh container",
    },
    "local-whitenoise": {
        "cold": "whitenoise cold copy",
        "nochange": "whitenoise no-change",
        "changed": "whitenoise 1% changed",
        "fresh": "whitenoise fresh checkout",
        "container": "whitenoise fresh container",
    },
}
#: Storages that hash names (S3ManifestStaticStorage, ManifestStaticFilesStorage,
#: WhiteNoise's CompressedManifestStaticFilesStorage).
MANIFEST = {"s3-manifest", "local-manifest", "local-whitenoise"}
#: The manifest those storages write (Django's default name).
MANIFEST_NAME = "staticfiles.json"
#: Table order: every scenario of S3, then of local disk.
SCENARIO_ORDER = [TITLES[storage][step] for storage in TITLES for step in STEPS]
STEP_OF = {
    title: step for by_step in TITLES.values() for step, title in by_step.items()
}

CHANGE_EVERY = 100  # WorkTree.change rewrites every 100th file: 1 %
#: Appended to a changed file, by extension; anything else gets CHANGED_BYTES.
CHANGED_SUFFIX = {
    ".css": b"\n/* changed */\n",
    ".js": b"\n// changed\n",
    ".map": b"\n\n",  # still JSON
    ".svg": b"<!-- changed -->\n",
}
CHANGED_BYTES = b"\x00changed"


def next_second() -> None:
    """Sleep into the next whole second.

    Stock compares modification times to the whole second, so a file written
    in the same second as its copy in the destination looks unmodified to it.
    A real change comes minutes after the last deployment; waiting here makes
    every file written afterwards strictly newer, to the second, than anything
    written before.
    """
    time.sleep(1.01 - time.time() % 1)


class WorkTree:
    """A copy of the cached tree that the incremental scenarios modify.

    The cached tree itself stays pristine; ``reset`` copies it again (with its
    modification times) so stock's chain and ours see the same changes.
    """

    def __init__(self, pristine: Path, path: Path) -> None:
        self.pristine = pristine
        self.path = path
        keys = [key for key, _ in static_files(pristine)]
        self.to_change = keys[CHANGE_EVERY - 1 :: CHANGE_EVERY]
        self.changed = False
        self._listing: Listing | None = None

    def reset(self) -> None:
        discard(self.path)
        shutil.copytree(self.pristine, self.path)
        self.changed = False
        self._listing = None

    def remove(self) -> None:
        discard(self.path)

    def listing(self) -> Listing:
        if self._listing is None:
            self._listing = local_listing(self.path)
        return self._listing

    def change(self) -> None:
        """Rewrite 1 % of the files: to new content, or back (for --repeat).

        Either way those files' content differs from what the destination
        holds, and they are newer than it.
        """
        next_second()
        for key in self.to_change:
            data = (self.pristine / key).read_bytes()
            if not self.changed:
                data += CHANGED_SUFFIX.get(Path(key).suffix, CHANGED_BYTES)
            (self.path / key).write_bytes(data)
        self.changed = not self.changed
        self._listing = None

    def touch(self) -> None:
        """Give every file a new modification time (now), as a fresh checkout."""
        next_second()
        now = time.time()
        for _, path in static_files(self.path):
            os.utime(path, (now, now))


class Destination(Protocol):
    """Where collectstatic writes, for one cold run or one chain."""

    storage: str  # "s3" or "local"

    def empty(self) -> None: ...
    def env(self, tree: Path, stock: bool) -> dict[str, str]: ...
    def reset_requests(self) -> None: ...
    def requests(self) -> dict[str, int]: ...
    def listing(self) -> Listing: ...
    def problems(self, listing: Listing) -> list[str]: ...
    def remove(self) -> None: ...
    def manifest(self) -> dict[str, str] | None: ...


@dataclass
class S3:
    """moto, the latency proxy in front of it, and a client that goes around it."""

    server: S3Server
    proxy: LatencyProxy | None  # None: straight to moto (memory.py)
    bucket: Bucket

    @property
    def endpoint(self) -> str:
        return (self.proxy or self.server).endpoint_url


class S3Destination:
    def __init__(self, s3: S3, name: str, manifest: bool) -> None:
        self.s3 = s3
        self.name = name
        self.created = False
        self.hashed = manifest
        self.storage = "s3-manifest" if manifest else "s3"

    def empty(self) -> None:
        if self.created:
            self.s3.bucket.empty(self.name)
        else:
            self.s3.bucket.create(self.name)
            self.created = True

    def env(self, tree: Path, stock: bool) -> dict[str, str]:
        return child_env(
            tree=str(tree),
            storage="s3",
            s3_endpoint=self.s3.endpoint,
            s3_bucket=self.name,
            stock="1" if stock else "0",
            manifest="1" if self.hashed else "0",
        )

    def reset_requests(self) -> None:
        self.s3.server.reset_requests()

    def requests(self) -> dict[str, int]:
        return request_kinds(self.s3.server.requests())

    def listing(self) -> Listing:
        return self.s3.bucket.listing(self.name)

    def problems(self, listing: Listing) -> list[str]:
        sample = content_type_sample(listing)
        wrong = self.s3.bucket.wrong_content_types(self.name, sample)
        return [f"{len(wrong)} wrong Content-Type (e.g. {wrong[0]})"] if wrong else []

    def manifest(self) -> dict[str, str] | None:
        return manifest_paths(self.s3.bucket.read(self.name, MANIFEST_NAME))

    def remove(self) -> None:
        if self.created:
            self.s3.bucket.delete(self.name)
            self.created = False


class LocalDestination:
    def __init__(self, root: Path, storage: str) -> None:
        self.root = root
        self.storage = storage
        self.hashed = storage in MANIFEST
        #: The build cache, for ours (a fresh container's chain).
        self.cache: Path | None = None

    def empty(self) -> None:
        discard(self.root)
        self.root.mkdir(parents=True)

    def env(self, tree: Path, stock: bool) -> dict[str, str]:
        return child_env(
            tree=str(tree),
            storage="local",
            static_root=str(self.root),
            stock="1" if stock else "0",
            manifest="1" if self.hashed else "0",
            whitenoise="1" if self.storage == "local-whitenoise" else "0",
            cache_dir="" if self.cache is None or stock else str(self.cache),
        )

    def reset_requests(self) -> None:
        pass

    def requests(self) -> dict[str, int]:
        return {}

    def listing(self) -> Listing:
        return local_listing(self.root)  # skips the record: a dot file

    def problems(self, listing: Listing) -> list[str]:
        return []

    def manifest(self) -> dict[str, str] | None:
        path = self.root / MANIFEST_NAME
        return manifest_paths(path.read_bytes() if path.exists() else None)

    def remove(self) -> None:
        discard(self.root)
        if self.cache is not None:
            discard(self.cache)


def manifest_paths(data: bytes | None) -> dict[str, str] | None:
    """The name -> hashed name map of a manifest's JSON, None if absent."""
    if data is None:
        return None
    paths: dict[str, str] = json.loads(data)["paths"]
    return paths


class Harness:
    def __init__(self, args: argparse.Namespace, tree: Path) -> None:
        self.args = args
        self.tree = tree
        self.expected = local_listing(tree)
        self.work = WorkTree(tree, WORK / "sync-tree")
        self.rows: list[Row] = []
        self.stock_s3: Listing | None = None
        #: (storage, step, tree changed) -> what stock's run of that step left.
        self.stock_left: dict[tuple[str, str, bool], Listing] = {}
        self.s3: S3 | None = None
        self.serial = itertools.count(1)

    # Plans

    def run_storage(self, storage: str, stock_steps: set[str]) -> None:
        """Every selected scenario on one storage; stock only for ``stock_steps``
        (the others were reused from an earlier run)."""
        if storage in ("s3", "s3-manifest"):
            server = S3Server().start()
            proxy = None
            try:
                proxy = LatencyProxy(server.port, self.args.rtt_ms / 2).start()
                self.s3 = S3(server, proxy, Bucket(server.endpoint_url))
                self.series(storage, stock_steps)
            finally:
                self.s3 = None
                if proxy is not None:
                    proxy.stop()
                server.stop()
        else:
            self.series(storage, stock_steps)

    def series(self, storage: str, stock_steps: set[str]) -> None:
        steps: set[str] = self.args.scenarios
        incremental = bool(steps - {"cold"})
        if storage == "s3":
            cold_workers, sync_workers = self.args.workers, self.args.sync_workers
        elif storage == "s3-manifest":
            cold_workers = sync_workers = self.args.sync_workers
        else:
            cold_workers = self.args.local_workers
            sync_workers = self.args.local_sync_workers
        if "container" in steps:
            if "container" in stock_steps:
                self.container(storage, "stock", "-")
            for workers in sync_workers:
                self.container(storage, "ours", workers)
            steps = steps - {"container"}
            stock_steps = stock_steps - {"container"}
            incremental = bool(steps - {"cold"})
        if stock_steps - {"cold"}:
            self.chain(storage, "stock", "-", steps)
        elif stock_steps:
            self.cold(storage, "stock", "-")
        chained: set[str] = set()
        if "cold" in steps:
            for workers in cold_workers:
                if storage == "s3":
                    self.cold(storage, "ceiling", workers)
                if incremental and workers in sync_workers:
                    self.chain(storage, "ours", workers, steps)
                    chained.add(workers)
                else:
                    self.cold(storage, "ours", workers)
        if incremental:
            for workers in sync_workers:
                if workers not in chained:
                    self.chain(storage, "ours", workers, steps)

    def destination(self, storage: str, command: str) -> Destination:
        number = next(self.serial)
        manifest = storage in MANIFEST
        if storage.startswith("s3"):
            assert self.s3 is not None
            return S3Destination(self.s3, f"bench-{number}-{command}", manifest)
        return LocalDestination(WORK / f"static-root-{number}", storage)

    # Runs

    def cold(self, storage: str, command: str, workers: str) -> Row:
        """One cold run on a destination of its own, removed afterwards."""
        destination = self.destination(storage, command)
        row = Row(TITLES[storage]["cold"], command, workers)

        def run() -> tuple[Child, str]:
            destination.empty()
            try:
                return self.execute(row, destination, self.tree, self.expected)
            finally:
                destination.remove()

        return self.measure(row, run)

    def chain(self, storage: str, command: str, workers: str, steps: set[str]) -> None:
        """Populate with a cold run, then the selected incremental steps."""
        destination = self.destination(storage, command)
        work = self.work
        prepare: dict[str, Callable[[], None]] = {
            "cold": destination.empty,
            "nochange": lambda: None,
            "changed": work.change,
            "fresh": work.touch,
        }
        work.reset()
        try:
            for step in STEPS:
                if step != "cold" and step not in steps:
                    continue
                row = Row(TITLES[storage][step], command, workers)

                def run(row: Row = row, step: str = step) -> tuple[Child, str]:
                    prepare[step]()
                    return self.execute(row, destination, work.path, work.listing())

                self.measure(row, run, keep=step in steps)
        finally:
            destination.remove()
            work.remove()

    def container(self, storage: str, command: str, workers: str) -> None:
        """A fresh container: a cold run (with the build cache, for ours),
        then the 1 % change and a run on an emptied destination."""
        destination = self.destination(storage, command)
        if isinstance(destination, LocalDestination):
            destination.cache = WORK / f"cache-{next(self.serial)}"
        work = self.work
        work.reset()
        try:
            cold = Row(TITLES[storage]["cold"], command, workers)

            def populate() -> tuple[Child, str]:
                destination.empty()
                return self.execute(cold, destination, work.path, work.listing())

            self.measure(cold, populate, keep=False)
            row = Row(TITLES[storage]["container"], command, workers)

            def run() -> tuple[Child, str]:
                work.change()
                destination.empty()
                return self.execute(row, destination, work.path, work.listing())

            self.measure(row, run)
        finally:
            destination.remove()
            work.remove()

    def command(
        self, destination: Destination, command: str, workers: str, tree: Path
    ) -> tuple[list[str], dict[str, str]]:
        if command == "ceiling":
            assert isinstance(destination, S3Destination)
            argv = [sys.executable, "-m", "benchmarks.ceiling", "--tree", str(tree)]
            argv += ["--endpoint", destination.s3.endpoint]
            argv += ["--bucket", destination.name, "--workers", workers]
            return argv, child_env()
        stock = command == "stock"
        argv = collectstatic_argv(None if stock else workers)
        return argv, destination.env(tree, stock)

    def execute(
        self, row: Row, destination: Destination, tree: Path, expected: Listing
    ) -> tuple[Child, str]:
        argv, env = self.command(destination, row.command, row.workers, tree)
        destination.reset_requests()
        # Nothing left to write back from what ran before (it slows file
        # creation for whichever command runs next).
        os.sync()
        child = run_child(argv, env, self.args.timeout)
        row.requests = destination.requests()
        if row.command != "ceiling":
            row.copied, row.unmodified = parse_summary(child.last_line)
        return child, failed(child) or self.check(row, destination, expected)

    def check(self, row: Row, destination: Destination, expected: Listing) -> str:
        listing = destination.listing()
        if destination.storage in MANIFEST:
            problems = self.check_manifest(row, destination, listing, expected)
        else:
            problems = compare(listing, expected, "the tree")
        if row.scenario == TITLES["s3"]["cold"]:
            if row.command == "stock":
                self.stock_s3 = listing
            elif self.stock_s3 is not None:
                problems += compare(listing, self.stock_s3, "stock's bucket")
            elif (
                self.args.stock_digest
                and listing_digest(listing) != self.args.stock_digest
            ):
                problems.append("listing differs from the reused stock run's")
        problems += destination.problems(listing)
        return "MISMATCH: " + "; ".join(problems) if problems else "ok"

    def check_manifest(
        self, row: Row, destination: Destination, listing: Listing, expected: Listing
    ) -> list[str]:
        """The tree's files as they are, a manifest naming only files that
        exist, and (when stock ran the same step in this run) exactly what
        stock left: hashed copies and manifest byte for byte."""
        originals = {key: listing[key] for key in expected.keys() & listing.keys()}
        problems = compare(originals, expected, "the tree")
        paths = destination.manifest()
        if paths is None:
            return [*problems, f"no {MANIFEST_NAME}"]
        if dangling := sorted(set(paths.values()) - listing.keys()):
            problems.append(f"manifest names {len(dangling)} missing files")
        if unhashed := sorted(expected.keys() - paths.keys()):
            problems.append(f"{len(unhashed)} files not in the manifest")
        # With --repeat, "changed" alternates the files' content (WorkTree.change):
        # compare with what stock left for the same content (a cold run
        # collects the pristine tree).
        step = STEP_OF[row.scenario]
        key = (destination.storage, step, step != "cold" and self.work.changed)
        if row.command == "stock":
            self.stock_left[key] = listing
        elif key in self.stock_left:
            problems += compare(listing, self.stock_left[key], "what stock left")
        return problems

    def measure(
        self, row: Row, run: Callable[[], tuple[Child, str]], keep: bool = True
    ) -> Row:
        """Run ``run`` --repeat times; keep the median wall and RSS.

        With ``keep`` False the run only prepares a destination: it is not a
        row of the table. A measured row replaces a reused one.
        """
        children: list[Child] = []
        checks: list[str] = []
        for _ in range(self.args.repeat if keep else 1):
            child, check = run()
            children.append(child)
            checks.append(check)
            if check != "ok":
                break
        row.walls = [round(c.wall_s, 3) for c in children]
        row.wall_s = statistics.median(c.wall_s for c in children)
        row.rss_mb = statistics.median(c.rss_mb for c in children)
        commands = [c.command_s for c in children if c.command_s is not None]
        row.command_s = statistics.median(commands) if commands else None
        row.check = next((c for c in checks if c != "ok"), "ok")
        copies = "-" if row.copied is None else f"{row.copied} copied"
        print(
            f"  {row.scenario:20} {row.command:8} {row.workers:>7}: "
            f"{row.wall_s:8.2f} s  {row.rss_mb:6.1f} MB  "
            f"{row.total_requests:6} req  {copies:>12}  {row.check}"
            + ("" if keep else "  (populating, not reported)"),
            file=sys.stderr,
            flush=True,
        )
        if keep:
            key = (row.scenario, row.command, row.workers)
            self.rows = [
                r
                for r in self.rows
                if not (r.reused and (r.scenario, r.command, r.workers) == key)
            ]
            self.rows.append(row)
        elif not row.ok:
            # The steps after it start from a bad destination: say why.
            row.check = f"population failed: {row.check}"
            self.rows.append(row)
        return row
