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

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import django
from django.conf import settings
from django.contrib.staticfiles.storage import HashedFilesMixin, ManifestFilesMixin
from django.contrib.staticfiles.utils import matches_patterns
from django.core.files.storage import Storage

from . import __version__
from .backends.base import Listing
from .record import Processed, Record

#: Storage attributes that change what HashedFilesMixin produces.
HASHING_ATTRIBUTES = (
    "manifest_name",
    "manifest_strict",
    "max_post_process_passes",
    "keep_intermediate_files",
    "support_js_module_import_aggregation",
    "patterns",
)
#: WhiteNoise settings that change what its storages produce.
WHITENOISE_SETTINGS = (
    "WHITENOISE_KEEP_ONLY_HASHED_FILES",
    "WHITENOISE_SKIP_COMPRESS_EXTENSIONS",
    "WHITENOISE_MANIFEST_STRICT",
)
#: The methods whose code decides names and contents. A storage we vouch for
#: has, for each, the code we know (Django's, or WhiteNoise's override).
DECIDING = (
    "post_process",
    "_post_process",
    "hashed_name",
    "file_hash",
    "url_converter",
    "_stored_name",
    "_url",
    "save_manifest",
    "hash_key",
    "clean_name",
    "get_ignored_blocks",
    "is_in_ignored_block",
)


def _known() -> dict[str, set[Any]]:
    """For each deciding method, the functions we know."""
    known: dict[str, set[Any]] = {
        name: {
            getattr(cls, name)
            for cls in (HashedFilesMixin, ManifestFilesMixin)
            if hasattr(cls, name)
        }
        for name in DECIDING
    }
    whitenoise = sys.modules.get("whitenoise.storage")
    if whitenoise is not None:
        cls = whitenoise.CompressedManifestStaticFilesStorage
        known["post_process"].add(cls.post_process)
        known["hashed_name"].add(cls.hashed_name)
    return known


def compressing(storage: Storage) -> bool:
    """WhiteNoise's CompressedStaticFilesStorage, whose only work is compressing."""
    whitenoise = sys.modules.get("whitenoise.storage")
    post_process = getattr(type(storage), "post_process", None)
    return whitenoise is not None and (
        post_process is whitenoise.CompressedStaticFilesStorage.post_process
    )


def vouch(storage: Storage) -> str | None:
    """None if post-processing a subset gives a complete run's result; else why
    a complete run is needed."""
    cls = type(storage)
    if compressing(storage):
        return None
    if not isinstance(storage, ManifestFilesMixin):
        return f"{cls.__qualname__} is not a manifest storage we know"
    known = _known()
    for name in DECIDING:
        found = getattr(cls, name, None)
        if found is None and not known[name]:
            continue  # not in this Django (get_ignored_blocks is newer than 5.2)
        if found not in known[name]:
            return f"{cls.__qualname__} overrides {name}()"
    if storage.keep_intermediate_files:
        return "the storage keeps intermediate files"
    return None


def settings_key(storage: Storage) -> str:
    """Everything but the sources that post-processing depends on, as a hash:
    the storage's class, options and hashing attributes, STATIC_URL, the
    versions of Django and this package (and, for WhiteNoise's storages, of
    WhiteNoise and Brotli), WhiteNoise's settings."""
    cls = storage.__class__
    # WhiteNoise's and Brotli's versions matter to WhiteNoise's storages only
    # (and reading them loads importlib.metadata: 1.3 MB).
    whitenoise = any(
        str(getattr(c, "__module__", "")).partition(".")[0] == "whitenoise"
        for c in cls.__mro__
    )
    deconstruct = getattr(storage, "deconstruct", None)
    options = deconstruct()[1:] if callable(deconstruct) else ()
    inputs = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "options": stable(options),
        "attributes": {
            a: stable(getattr(storage, a, None)) for a in HASHING_ATTRIBUTES
        },
        "django": django.get_version(),
        "collectstatic_plus": __version__,
        "static_url": str(settings.STATIC_URL),
        "whitenoise": _version_of("whitenoise") if whitenoise else None,
        "whitenoise_settings": {
            name: stable(getattr(settings, name, None)) for name in WHITENOISE_SETTINGS
        },
        "brotli": _version_of("brotli") if whitenoise else None,
    }
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _version_of(package: str) -> str | None:
    from importlib import metadata  # here: 1.3 MB, for WhiteNoise's storages

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def stable(value: Any) -> Any:
    """``value`` as plain data that is the same in every process.

    Objects such as credentials are reduced to their class: their repr holds
    a memory address that would change the key on every run.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [stable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): stable(item) for key, item in sorted(value.items())}
    pattern = getattr(value, "pattern", None)  # a (lazily) compiled regex
    if isinstance(pattern, str | bytes) and hasattr(value, "flags"):
        return {"pattern": stable(pattern), "flags": value.flags}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def subset(
    current: Mapping[str, str], previous: Mapping[str, Processed]
) -> dict[str, str]:
    """The sources to post-process again, each with why, in ``current``'s order.

    ``current`` maps each source to its MD5; ``previous`` is the last
    complete run's record. New and changed files, and every file that refers
    to one of those or to a removed file, directly or through others.
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
            referrers.setdefault(target, []).append(path)
    removed = [path for path in previous if path not in current]
    queue = [*why, *removed]
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


class Plan(NamedTuple):
    """How a run post-processes: "up to date", "incremental" or "full"."""

    mode: str
    #: The files to give ``post_process``, each with why.
    files: dict[str, str]
    #: Why the run is not incremental (empty if it is).
    reason: str = ""

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
        if row.consumed and (path in copied or path in listing):
            files[path] = "its original is there again; the storage removes it"
        elif any(name not in listing for name in row.outputs):
            files[path] = "its output is missing from the destination"
    files = {path: files[path] for path in digests if path in files}
    removed = any(path not in digests for path in rows)
    name = getattr(storage, "manifest_name", None)
    manifest_there = name is None or compressing(storage) or name in listing
    if not files and not removed and manifest_there:
        return Plan("up to date", {})
    return Plan("incremental", files)


def why_full(
    storage: Storage, key: str, previous: Record | None, listing: Listing | None
) -> str:
    """Why this run cannot be incremental ("" if it can)."""
    reason = vouch(storage)
    if reason is not None:
        return reason
    if previous is None or not previous.processed:
        return "no record of a complete post-process"
    if previous.state.get("postprocess") != key:
        return "the storage's settings or versions changed"
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
