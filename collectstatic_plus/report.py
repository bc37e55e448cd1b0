"""What a run did (or, dry, would do): per file, in total, per phase.

The :class:`Report` is filled in by the steps of a run as they go, from any
thread. It renders as the human summary table of ``--dry-run`` and ``-v 2``,
and as the JSON document of ``--report`` (schema in ``report.schema.json``,
version
:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import django
from django.core.management.base import CommandError

from . import __version__
from .progress import human_size
from .sources import source_folder_of

SCHEMA_VERSION = 2

#: Stock's options that the report repeats as given, then ours.
GIVEN_OPTIONS = (
    *("dry_run", "clear", "link", "post_process", "ignore_patterns"),
    *("use_default_ignore_patterns", "parallel", "force", "verify"),
    *("max_delete", "check"),
)
#: Ours as the run takes them (settings and implied options resolved).
RUN_OPTIONS = ("delete", "delete_unowned", "keep_manifests", "cache_dir")

#: Per-file actions, in the order the summary table lists them.
ACTIONS = ("new", "changed", "unchanged", "deleted", "conflict", "failed")


def check_target(target: str | os.PathLike[str] | None, storage: Any = None) -> None:
    """Fail in one line, before a run starts, if ``--report`` names a file
    that cannot be written, or one inside a local ``storage``'s root or a
    folder the finders collect from (a dry run writes nothing there; the
    report is no static file). An existing file is emptied (a run that stops
    before it collects leaves no earlier run's report); a new one is removed
    again."""
    if target is None or target == "-":
        return
    folder = os.path.dirname(os.path.abspath(target))
    try:
        root = os.path.realpath(storage.path("")) if storage is not None else None
    except Exception:  # not on local disk, or not set up (said later)
        root = None
    where = os.path.realpath(target)  # (a symlink into it is inside it too)
    if root and os.path.commonpath([root, where]) == root:
        raise CommandError(
            f"Cannot write the report to '{target}': it is inside the "
            f"destination ('{root}'); choose a path outside it."
        )
    if found := source_folder_of(target):
        raise CommandError(
            f"Cannot write the report to '{target}': it is inside a static "
            f"files folder ('{found}'), so it would be collected; choose a "
            "path outside it."
        )
    try:
        if not os.path.isdir(folder):
            missing = (
                "is not a directory" if os.path.exists(folder) else "does not exist"
            )
            raise FileNotFoundError(f"'{folder}' {missing}")
        if os.path.lexists(target):
            with open(target, "w", encoding="utf-8"):
                pass
        else:
            with open(target, "x", encoding="utf-8"):
                pass
            os.remove(target)
    except OSError as error:
        why = error.strerror or str(error)
        raise CommandError(f"Cannot write the report to '{target}': {why}.") from None


@dataclass(slots=True)
class FileEntry:
    path: str
    action: str
    source: str | None = None
    size: int | None = None
    old_size: int | None = None
    md5: str | None = None
    hashed_name: str | None = None
    reason: str | None = None
    minify: dict[str, Any] | None = None


class Report:
    """What a run did (or would do), file by file when anyone will read it.

    With ``keep_files`` False (a real run without ``--report``) no per-file
    entries are kept, only the sizes written for the ``-v 2`` byte count:
    50,000 entries would hold megabytes that nobody reads.
    """

    def __init__(self, dry_run: bool, keep_files: bool = True) -> None:
        self.dry_run = dry_run
        self.keep_files = keep_files
        self.files: dict[str, FileEntry] = {}
        #: Minification noted before the file's action is known (minify.py).
        self.minified: dict[str, dict[str, Any]] = {}
        #: Bytes written, when ``files`` is not kept.
        self.written = 0
        self.extra: list[FileEntry] = []
        self.errors: list[dict[str, str]] = []
        self.timings: dict[str, float] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.post_processing: dict[str, Any] = {"status": "not run"}
        #: What --delete kept as not ours, or why it deleted nothing.
        self.deletions: dict[str, Any] = {}
        self.storage: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self.lock = threading.Lock()

    # Filling it in ----------------------------------------------------------

    def describe_options(self, given: Mapping[str, Any], run: Any) -> None:
        """The options as given, and as the run (a RunOptions) takes them."""
        self.options = {key: given.get(key) for key in GIVEN_OPTIONS}
        self.options.update((key, getattr(run, key)) for key in RUN_OPTIONS)
        self.options["minify"] = run.minify.enabled

    def file(self, path: str, action: str, **fields: Any) -> None:
        if not self.keep_files:
            if action in ("new", "changed") and fields.get("size") is not None:
                with self.lock:
                    self.written += fields["size"]  # once per file: one copy each
            return
        with self.lock:
            entry = self.files.get(path)
            if entry is None:
                fields.setdefault("minify", self.minified.pop(path, None))
                self.files[path] = FileEntry(path, action, **fields)
                return
            entry.action = action
            for key, value in fields.items():
                if value is not None:
                    setattr(entry, key, value)

    def minify(self, path: str, outcome: dict[str, Any]) -> None:
        """How a file was minified, before or after its action is known."""
        if not self.keep_files:
            return
        with self.lock:
            entry = self.files.get(path)
            if entry is None:
                self.minified[path] = outcome
            else:
                entry.minify = outcome

    def other(self, path: str, action: str, **fields: Any) -> None:
        """A destination file that is not a collected path (deleted, conflict)."""
        with self.lock:
            self.extra.append(FileEntry(path, action, **fields))

    def error(self, path: str, reason: str, landed: bool = False) -> None:
        """A file that failed (``landed``: copied; its post-processing failed)."""
        with self.lock:
            self.errors.append({"path": path, "reason": reason})
        if not landed:
            self.file(path, "failed", reason=reason)

    def count_request(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self.lock:
                self.timings[name] = self.timings.get(name, 0.0) + elapsed

    # Reading it -------------------------------------------------------------

    @property
    def planned(self) -> bool:
        """Whether the run got as far as deciding file by file."""
        return "transfer" in self.timings

    def entries(self) -> list[FileEntry]:
        return sorted(self.files.values(), key=lambda e: e.path) + self.extra

    def totals(self) -> dict[str, dict[str, int]]:
        totals = {action: {"files": 0, "bytes": 0} for action in ACTIONS}
        for entry in self.entries():
            bucket = totals.setdefault(entry.action, {"files": 0, "bytes": 0})
            bucket["files"] += 1
            bucket["bytes"] += entry.size or 0
        return totals

    @property
    def changes(self) -> int:
        """Files that would be (or were) written or deleted, manifest included."""
        totals = self.totals()
        pp = self.post_processing
        writes = len(pp.get("would_write") or []) + bool(pp.get("manifest_changes"))
        writes += len(pp.get("would_delete") or [])
        return sum(totals[a]["files"] for a in ("new", "changed", "deleted")) + writes

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "dry_run": self.dry_run,
            "versions": {
                "django": django.get_version(),
                "collectstatic_plus": __version__,
            },
            "storage": self.storage,
            "options": self.options,
            "files": [
                {k: v for k, v in asdict(entry).items() if v is not None}
                for entry in self.entries()
            ],
            "totals": self.totals(),
            "post_processing": self.post_processing,
            "deletions": self.deletions,
            "timings": {k: round(v, 4) for k, v in sorted(self.timings.items())},
            "requests": dict(sorted(self.requests.items())),
            "errors": self.errors,
        }

    def describe_storage(self, storage: Any) -> None:
        kind = storage.__class__  # (a LazyObject passes it through)
        self.storage = {
            "class": f"{kind.__module__}.{kind.__qualname__}",
            "location": str(getattr(storage, "location", "") or ""),
        }

    def write(self, target: str | None, stdout: Any, failing: Any = None) -> None:
        """The JSON document to ``target`` (``-``: ``stdout``), if any. If
        the run is ``failing`` (its stderr), a report that cannot be written
        is said there: the run's own error is the one raised."""
        if target is None:
            return
        if target == "-":
            stdout.write(self.dumps(), ending="")
            return
        try:
            self._write_file(target)
        except OSError as error:
            said = f"Could not write the report: {error}"
            if failing is None:
                raise CommandError(said) from error
            failing.write(said)

    def _write_file(self, target: str) -> None:
        """Whole or not at all: a regular file is written beside, then renamed
        over; through a symlink, to a device or a pipe, or where nothing can
        be created beside it, written in place."""
        try:
            regular = stat.S_ISREG(os.lstat(target).st_mode)
        except FileNotFoundError:
            regular = True
        if regular:
            beside = f"{target}.{os.getpid()}.tmp"
            try:
                with open(beside, "x", encoding="utf-8") as handle:
                    handle.write(self.dumps())
                os.replace(beside, target)
                return
            except BaseException as error:
                with contextlib.suppress(OSError):
                    os.remove(beside)
                if not isinstance(error, PermissionError):
                    raise
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(self.dumps())

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    def table(self) -> str:
        """The human summary: one line per action with files and bytes."""
        totals = self.totals()
        verb = "would be" if self.dry_run else "were"
        lines = [f"{'action':<12}{'files':>8}{'bytes':>14}"]
        for action in ACTIONS:
            count = totals[action]
            if count["files"]:
                lines.append(f"{action:<12}{count['files']:>8}{count['bytes']:>14,}")
        pp = self.post_processing
        lines += self.post_processing_plan()
        if pp.get("status") == "simulated":
            writes, held = pp.get("would_write", []), pp.get("already_there", [])
            manifest = "changes" if pp.get("manifest_changes") else "is unchanged"
            lines.append(
                f"post-processing: {len(writes)} file(s) {verb} written, "
                f"{len(held)} already there; the manifest {manifest}"
            )
        elif pp.get("status") != "not run":
            lines.append(f"post-processing: {pp['status']}")
        minified = [e.minify for e in self.files.values() if e.minify]
        if minified:
            done = [m for m in minified if m["minified"]]
            before = sum(m["before"] for m in done)
            after = sum(m["after"] for m in done)
            lines.append(
                f"minified: {len(done)} file(s), {before:,} -> {after:,} bytes; "
                f"{len(minified) - len(done)} left as they are"
            )
        if self.dry_run:
            copies = totals["new"]["files"] + totals["changed"]["files"]
            size = totals["new"]["bytes"] + totals["changed"]["bytes"]
            lines.append(
                f"Dry run: would copy {_count(copies)} ({human_size(size)}) and "
                f"delete {_count(totals['deleted']['files'])}; nothing was written."
            )
        return "\n".join(lines)

    def post_processing_plan(self) -> list[str]:
        """Which files post-processing takes and why: each file of an
        incremental run with its reason, or why the run is a full one."""
        pp = self.post_processing
        if pp.get("mode") == "full":
            return [f"post-processing: full run because {pp.get('reason')}"]
        if pp.get("mode") != "incremental":
            return []
        files: dict[str, str] = pp.get("files", {})
        verb = "would be" if self.dry_run else "were"
        lines = [f"post-processing: incremental, {len(files)} file(s) {verb} processed"]
        if reason := pp.get("reason"):  # (files or none, the manifest is written)
            was = "would be" if self.dry_run else "was"
            lines[0] += f"; the manifest {was} written again: {reason}"
        lines += [f"  {path}: {why}" for path, why in files.items()]
        return lines

    def phase_lines(self) -> list[str]:
        """Elapsed time per phase, bytes and requests, for ``-v 2``."""
        written = self.written + sum(
            e.size or 0 for e in self.files.values() if e.action in ("new", "changed")
        )
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        lines = [f"Phases: {phases}.", f"Bytes copied: {written:,}."]
        if self.requests:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.requests.items()))
            lines.append(f"Requests: {kinds}.")
        return lines


def _count(files: int) -> str:
    return f"{files:,} file" + ("" if files == 1 else "s")
