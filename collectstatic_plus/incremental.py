"""Incremental post-processing: the storage's own ``post_process``, given only
the files whose output can differ from the last complete run.

For a hashing storage (Django's ``HashedFilesMixin``/``ManifestFilesMixin``,
and WhiteNoise's, whose code we know), a file's hashed name and rewritten
content depend on its own content and on the final names of the files it
references, and on nothing else. So after a complete post-process, the sync
record keeps, per source: the MD5 it was given, its hashed name, the files it
referenced and what the post-processor wrote for it. The next run hands
``post_process`` only the *subset*: files that are new or changed, and the
files that reference any of those (or a removed file), transitively. While it
runs, a reference to a file outside the subset resolves to that file's
recorded name (:class:`.hooks.Hooks`), and the manifest it writes holds every file,
in the order a complete run would give (:func:`full_order`).

Two more things make the result exactly a complete run's:

- a complete run resolves references over several passes and fails when they
  do not settle within ``max_post_process_passes``; :func:`passes_needed`
  replays that on the graph of references, and where a complete run would not
  settle (a cycle, a chain too long for the passes) the caller runs one;
- anything we cannot vouch for (:func:`vouch`) gets a complete run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from django.contrib.staticfiles.utils import matches_patterns
from django.core.files.storage import Storage

from .backends.base import Backend, Listing
from .record import MD5, Processed, Record
from .vouch import compressing, unhashed, vouch


def subset(
    current: Mapping[str, str], previous: Mapping[str, Processed]
) -> dict[str, str]:
    """The sources to post-process again, each with why, in ``current``'s order.

    ``current`` maps each source to its MD5; ``previous`` is the last
    complete run's record. New and changed files, and every file that refers
    to one of those or to a file not collected (removed, now or before: a
    complete run would look for it again), directly or through others.
    """
    why: dict[str, str] = {}
    for path, md5 in current.items():
        old = previous.get(path)
        if old is None:
            why[path] = "new"
        elif old.md5 != md5:
            why[path] = "changed"
    referrers: dict[str, list[str]] = {}
    for path, old in previous.items():
        for target in old.refs:
            original = unhashed(target)  # a hashed name of a collected file?
            if target not in current and original is not None and original in current:
                target = original
            referrers.setdefault(target, []).append(path)
    queue = [*why, *(target for target in referrers if target not in current)]
    while queue:
        target = queue.pop()
        for path in referrers.get(target, ()):
            if path in current and path not in why:
                why[path] = f"references {target}"
                queue.append(path)
    return {path: why[path] for path in current if path in why}


def full_order(paths: list[str]) -> list[str]:
    """The order a complete run adds names to its manifest: deepest
    directories first, in finder order within a depth (Django < 6.0 writes
    them so; later versions sort them)."""
    return sorted(paths, key=lambda name: len(name.split(os.sep)), reverse=True)


def adjustable(storage: Storage, paths: list[str]) -> set[str]:
    """The files the storage rewrites (CSS, JS...): Django's own test, on
    its private ``_patterns``."""
    patterns = getattr(storage, "_patterns", {})
    return {path for path in paths if matches_patterns(path, patterns)}


def passes_needed(
    order: list[str], rewritten: set[str], refs: Mapping[str, tuple[str, ...]]
) -> int | None:
    """The pass in which a complete run's last rewritten file gets its final
    content; None if it never would (a reference cycle).

    A complete run processes every file in ``order`` once, then the rewritten
    ones again, pass after pass, until a pass changes no name. A file is
    final in a pass if every rewritten file it refers to (that itself refers
    to something) was final before it came up in that pass.
    """
    final = {path for path in rewritten if not refs.get(path)}
    pending = [path for path in order if path in rewritten and path not in final]
    waits = {  # (tuples: a set per file would be most of a run's peak memory)
        path: tuple(t for t in refs.get(path, ()) if t in rewritten and refs.get(t))
        for path in pending
    }
    passes = 1
    while pending:
        left = []
        for path in pending:
            if all(target in final for target in waits[path]):
                final.add(path)
            else:
                left.append(path)
        if left == pending:
            return None
        pending = left
        if pending:
            passes += 1
    return passes


SETTINGS_CHANGED = "the storage's settings changed"
VERSIONS_CHANGED = "the storage's code or versions changed"


class Plan(NamedTuple):
    """How a run post-processes: "up to date", "incremental" or "full"."""

    mode: str
    #: The files to give ``post_process``, each with why.
    files: dict[str, str]
    #: Why the run is full; of an incremental one, why the manifest is
    #: written again.
    reason: str = ""

    @property
    def resaves(self) -> bool:
        """Whether what the storage saves is written even where the
        destination holds those bytes: its settings (ACLs, headers, gzip)
        changed, and stock's saves would give the new ones."""
        return self.reason == SETTINGS_CHANGED

    def described(self) -> dict[str, Any]:
        """For the report: the mode, why, and the files of an incremental run."""
        described: dict[str, Any] = {"status": "failed", "mode": self.mode}
        if self.reason:
            described["reason"] = self.reason
        if self.mode == "incremental":
            described["files"] = dict(self.files)
        return described


def plan(
    storage: Storage,
    key: str,
    digests: Mapping[str, str],
    listing: Listing | None,
    previous: Record | None,
    copied: set[str],
    backend: Backend,
    distrust: str = "",
) -> Plan:
    """Which files to post-process this run, and why.

    ``digests`` maps each source to its MD5, ``key`` is the storage's
    :func:`settings_key`, ``copied`` holds the files this run wrote;
    ``distrust`` the option that says not to trust the destination's outputs.
    """
    reason = distrust and f"{distrust} checks every output"
    reason = reason or why_full(storage, key, previous, listing)
    if reason:
        return Plan("full", dict.fromkeys(digests, "full run"), reason)
    assert previous is not None and listing is not None
    rows = previous.processed
    files = subset(digests, rows)
    for path, row in rows.items():
        if path not in digests or path in files:
            continue
        overwritten = sorted(name for name in row.outputs if name in copied)
        if row.consumed and (path in copied or path in listing):
            files[path] = "its original is there again; the storage removes it"
        elif overwritten:
            # A collected file of that name (a shipped a.js.gz beside a.js)
            # replaced what the storage made: a complete run makes it again.
            files[path] = f"a collected file replaced its output {overwritten[0]}"
        elif path in copied and path in listing:
            # As recorded, yet copied: the destination held other bytes.
            files[path] = "the destination held another version of it"
        elif any(name not in listing for name in row.outputs) or (
            row.hashed is not None and row.hashed not in listing
        ):
            files[path] = "its output is missing from the destination"
    files = {path: files[path] for path in digests if path in files}
    removed = any(path not in digests for path in rows)
    moved = manifest_moved(storage, listing, previous, backend)
    if not files and not removed and not moved:
        return Plan("up to date", {})
    return Plan("incremental", files, moved)


def manifest_moved(
    storage: Storage, listing: Listing, previous: Record, backend: Backend
) -> str:
    """Why the manifest the last run published is not there now ("" if it
    is): gone, or another one (another run, stock's say, wrote one naming
    other files). The record has its ETag or MD5 (Staging.published): on
    local disk it is read, elsewhere the listing's ETag (or MD5) says."""
    name = getattr(storage, "manifest_name", None)
    if name is None or compressing(storage):
        return ""
    remote, published = listing.get(name), previous.state.get("manifest")
    if remote is None:
        return f"{name} is missing from the destination"
    # Like with like: an MD5 with the listed MD5 (none, as of a blob put in
    # blocks on Azure: not known), an upload's ETag with the listed ETag.
    there = remote.md5 if published and MD5.fullmatch(published) else remote.etag
    if backend.local and published:  # (cheap)
        there = getattr(backend.digest(name), "md5", None)
    if published is None or there is None or there == published:  # (trusted)
        return ""
    return f"{name} is not the one the last run wrote"


def why_full(
    storage: Storage, key: str, previous: Record | None, listing: Listing | None
) -> str:
    """Why this run cannot be incremental ("" if it can)."""
    reason = vouch(storage)
    if reason is not None:
        return reason
    if previous is None or not previous.processed:
        return "no record of a complete post-process"
    last = previous.state.get("postprocess") or ""
    if last != key:  # (the key says how files are saved first: vouch.settings_key)
        same = last.partition("-")[0] == key.partition("-")[0]
        return VERSIONS_CHANGED if same else SETTINGS_CHANGED
    if listing is None:
        return "the destination cannot be listed"
    manifest_storage = getattr(storage, "manifest_storage", storage)
    if manifest_storage.__dict__.get("_wrapped", manifest_storage) is not storage:
        return "the manifest is kept in another storage"
    return ""


def settles(
    storage: Any,
    digests: Mapping[str, str],
    rows: Mapping[str, Processed],
    refs_now: Mapping[str, set[str]],
    files: Mapping[str, str],
) -> bool:
    """Whether a complete run would settle its references in its passes:
    the references of ``files`` as this run followed them, the others'
    as recorded."""
    if compressing(storage):
        return True
    paths = list(digests)
    refs = {
        path: tuple(refs_now.get(path, ()))
        if path in files
        else (rows[path].refs if path in rows else ())
        for path in paths
    }
    needed = passes_needed(full_order(paths), adjustable(storage, paths), refs)
    return needed is not None and needed <= storage.max_post_process_passes


def rows_after(
    storage: Storage,
    plan: Plan,
    digests: Mapping[str, str],
    rows: Mapping[str, Processed],
    refs: Mapping[str, set[str]],
    names: Mapping[str, str],
    outputs: Mapping[str, list[str]],
) -> dict[str, Processed]:
    """What the next record says of each source after ``plan`` ran: the
    files it processed afresh, the previous rows of the others (none after
    a full run)."""
    hashing = not compressing(storage)
    # WhiteNoise removes the originals it hashed (we know its code).
    removes = hashing and bool(getattr(storage, "keep_only_hashed_files", False))
    fresh = {
        path: Processed(
            digests[path],
            names.get(path) if hashing else None,
            tuple(sorted(refs.get(path, ()))),
            tuple(sorted(outputs.get(path, ()))),
            removes and names.get(path, path) != path,
        )
        for path in plan.files
    }
    kept = {} if plan.mode == "full" else rows
    return {
        path: fresh[path] if path in fresh else kept[path]
        for path in digests
        if path in fresh or path in kept
    }


def would_publish(
    storage: Storage,
    plan: Plan,
    digests: Mapping[str, str],
    rows: Mapping[str, Processed],
    names: Mapping[str, str],
) -> list[str] | None:
    """The names a simulated post-process's manifest would publish (its
    storage's ``hashed_files`` is restored by then); None without one."""
    if not isinstance(getattr(storage, "hashed_files", None), dict):
        return None
    after = rows_after(storage, plan, digests, rows, {}, names, {})
    return sorted({row.hashed for row in after.values() if row.hashed})
