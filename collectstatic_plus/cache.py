"""A build cache for fresh containers: post-processing outputs kept on local
disk between builds, by content.

A Docker image built with ``RUN python manage.py collectstatic`` starts from
an empty STATIC_ROOT every time, so there is no sync record to say what the
last post-process did, and stock hashes and compresses every file again.
With ``CACHE_DIR`` (or ``--cache-dir``) pointing at a directory that
survives builds (a cache mount), a complete post-process leaves there:

- ``objects/ab/<md5>``: each output it wrote (hashed copies, rewritten files,
  compressed variants), named by the MD5 of its content;
- ``states/<key>.json``: per source, what the post-process did (as the sync
  record's ``processed`` rows) and the MD5 of each output, for one set of
  storage settings and versions (``key``, see ``vouch.settings_key``).

The next build restores the outputs of every unchanged source from there
(as post-processing writes them: through the storage, but for WhiteNoise's
compressed files, which it writes with a plain ``open()``), then post-processes
incrementally. Every object is checked against its MD5 as it is read: a
damaged or foreign one is dropped, and its source post-processed again.
The cache keeps at most ``CACHE_MAX_SIZE`` bytes of objects, dropping the
least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat as stat_module
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from django.core.files import File
from django.core.files.storage import Storage

from .backends.base import Listing, Remote
from .digest import CHUNK
from .paths import is_safe_path
from .record import MD5, Processed, Record, RecordError, add_processed
from .sources import source_folder_of
from .target import Target, saves_as_files
from .vouch import vouch

#: A state file larger than this is not read.
MAX_STATE_BYTES = 256 * 1024 * 1024
#: The folders objects are kept in: the first two hex digits of their MD5.
OBJECT_FOLDER = re.compile(r"[0-9a-f]{2}")
#: What the cache writes there: objects (an MD5) and states (a key).
OWN_FILE = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}\.json")


@dataclass
class Cached:
    """What the cache knows of the last complete post-process with one key."""

    rows: dict[str, Processed] = field(default_factory=dict)
    #: The MD5 of each output, by name.
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Restored:
    """What :meth:`BuildCache.restore` did."""

    #: The outputs put back (a dry run: that would be).
    outputs: list[str] = field(default_factory=list)
    #: Objects that were missing or did not match their MD5.
    damaged: list[str] = field(default_factory=list)
    #: Outputs the storage could not write (post-processed again instead,
    #: which fails naming them if they still cannot be written).
    unwritten: list[str] = field(default_factory=list)


class BuildCache:
    """One cache directory, as seen by a run with one set of settings."""

    def __init__(self, root: str, max_bytes: int, key: str) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.key = key
        #: What this run did with the cache, for the report.
        self.report: dict[str, Any] = {}
        self.restored = Restored()
        self._state: Cached | None = None
        self._loaded = False

    def state(self) -> Cached | None:
        """What the cache holds for this run's settings (read once)."""
        if not self._loaded:
            self._state = self.load(self.key)
            self._loaded = True
        return self._state

    def as_record(self) -> Record:
        """The cached post-process, as a sync record holding only that."""
        state = self.state()
        assert state is not None
        return Record(
            "build cache", processed=state.rows, state={"postprocess": self.key}
        )

    def object_path(self, md5: str) -> str:
        # (A string, not a Path: Python 3.12's pathlib interns each part of a
        # path it parses, for good: every MD5 read would stay in memory.)
        return os.path.join(self.root, "objects", md5[:2], md5)

    def state_file(self, key: str) -> Path:
        return self.root / "states" / f"{key}.json"

    def load(self, key: str) -> Cached | None:
        """The state saved for ``key``; None if there is none or it cannot be
        trusted (every field is checked, as the sync record's)."""
        path = self.state_file(key)
        try:
            if not path.is_file() or path.stat().st_size > MAX_STATE_BYTES:
                return None  # (a FIFO or a device would never end)
            document = json.loads(path.read_bytes())
            cached = Cached()
            for row in document["rows"]:
                add_processed(cached.rows, row)
            shared: dict[str, str] = {}  # each name and MD5 held once (memory)
            for row in cached.rows.values():
                shared.update((name, name) for name in row.outputs)
                shared[row.md5] = row.md5
            for name, md5 in document["outputs"].items():
                if not is_safe_path(name) or type(md5) is not str:
                    return None
                if not MD5.fullmatch(md5):
                    return None
                cached.outputs[shared.get(name, name)] = shared.get(md5, md5)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecordError):
            return None
        return cached

    def restore(
        self,
        digests: Mapping[str, str],
        listing: Listing,
        target: Target | None,
        again: Collection[str] = (),
    ) -> Listing:
        """The listing with the outputs of each unchanged source but those
        post-processed ``again`` put back, each written as post-processing
        writes it (None only checks them): the storage saves hashed copies
        and rewritten files, WhiteNoise's compressor writes its own files."""
        cached = self.state()
        assert cached is not None
        listing, done = dict(listing), self.restored
        for path, row in cached.rows.items():
            if digests.get(path) != row.md5 or path in again:
                continue
            plain = compressed(path, row)
            for name in row.outputs:
                if name in listing:
                    continue
                md5 = cached.outputs.get(name)
                data = self._read(md5, target is not None) if md5 is not None else None
                if data is None:
                    done.damaged.append(name)
                    break  # the source is post-processed again
                try:
                    if target is not None and name in plain:
                        target.write_plain(name, data)
                    elif target is not None:
                        content = File(io.BytesIO(data), name=name)
                        if not target.replace(name, content):  # (no room beside)
                            target.write(name, content, overwrites=False)
                except Exception:  # said when post-processing writes it again
                    done.unwritten.append(name)
                    break
                listing[name] = Remote(len(data))
                done.outputs.append(name)
        self.report["restored"] = len(done.outputs)
        if done.damaged:
            self.report["damaged"] = done.damaged
        if done.unwritten:
            self.report["not_restored"] = done.unwritten
        return listing

    def _read(self, md5: str, use: bool = True) -> bytes | None:
        """An object's bytes, if it is there and is what its name says. If
        ``use`` (not a dry run, which changes nothing), a damaged object is
        removed and a good one marked as used."""
        path = self.object_path(md5)
        if not os.path.isfile(path):
            return None  # missing (a FIFO or a device would never end)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
            if use:
                with contextlib.suppress(OSError):
                    os.remove(path)  # damaged: never served
            return None
        if use:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used
        return data

    def keep(
        self,
        rows: Mapping[str, Processed],
        fresh: Collection[str],
        path_of: Callable[[str], str],
    ) -> str | None:
        """Keep this post-process: every output of the ``fresh`` sources (this
        run wrote them) is read from the destination (``path_of`` a name)
        into the cache; another source is kept if the cache holds its outputs
        already (what the destination holds otherwise is not read: it may
        have been changed by hand). What went wrong if the cache could not be
        written (it is an aid: the run goes on)."""
        try:
            cached = self.state()
            if cached is not None and cached.rows == rows:
                self._touch(cached.outputs.values())
                os.utime(self.state_file(self.key))  # (used: evicted last)
                return None  # nothing new
            known = cached.outputs if cached is not None else {}
            kept: dict[str, Processed] = {}
            outputs: dict[str, str] = {}
            added = 0
            for path, row in rows.items():
                if path in fresh:
                    for name in row.outputs:
                        outputs[name], new = self._add(path_of(name))
                        added += new
                elif all(self._holds(known.get(name)) for name in row.outputs):
                    outputs.update((name, known[name]) for name in row.outputs)
                else:
                    continue  # not known to the cache: left out
                kept[path] = row
            self._touch(outputs.values())
            self._write_atomically(
                self.state_file(self.key), partial(_state, kept, outputs)
            )
            self.report["stored"] = added
        except OSError as error:
            self.report["not_kept"] = str(error)
            return f"The build cache in '{self.root}' was not updated: {error}."
        finally:
            self.evict()
        return None

    def _add(self, source: str) -> tuple[str, bool]:
        """Copy a file into the cache; its MD5, and whether it was new."""
        md5 = hashlib.md5(usedforsecurity=False)
        with open(source, "rb") as handle:
            while chunk := handle.read(CHUNK):
                md5.update(chunk)
        target = self.object_path(md5.hexdigest())
        if os.path.isfile(target):
            return md5.hexdigest(), False
        with open(source, "rb") as handle:
            self._write_atomically(target, partial(shutil.copyfileobj, handle))
        return md5.hexdigest(), True

    @staticmethod
    def _write_atomically(
        path: str | Path, write: Callable[[BinaryIO], object]
    ) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                write(out)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise

    def _holds(self, md5: str | None) -> bool:
        return md5 is not None and os.path.isfile(self.object_path(md5))

    def _touch(self, md5s: Iterable[str]) -> None:
        """Mark objects as used now (eviction drops the least recently used)."""
        for md5 in set(md5s):
            with contextlib.suppress(OSError):
                os.utime(self.object_path(md5))

    def evict(self) -> None:
        """Drop the least recently used files until they fit the budget.

        Only what the cache writes is counted and removed: objects (regular
        files named by an MD5 in their folder), the states of other settings
        (this run's is not counted) and temporaries an interrupted run left
        an hour ago or more; anything else is left alone.
        """
        found = []
        stale = time.time() - 3600
        folders = [os.path.join(self.root, "states")]
        current = f"{self.key}.json"
        for sub in _entries(os.path.join(self.root, "objects")):
            real = sub.is_dir(follow_symlinks=False)
            if real and OBJECT_FOLDER.fullmatch(sub.name):
                folders.append(sub.path)
        for folder in folders:
            for entry in _entries(folder):
                with contextlib.suppress(OSError):
                    stat = entry.stat(follow_symlinks=False)
                    name = entry.name
                    own = OWN_FILE.fullmatch(name) is not None and name != current
                    left = name.startswith(".tmp-") and stat.st_mtime < stale
                    if (own or left) and stat_module.S_ISREG(stat.st_mode):
                        found.append((stat.st_mtime, stat.st_size, entry.path))
        total = sum(size for _, size, _ in found)
        for _, size, path in sorted(found):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.remove(path)
            total -= size


def build_cache(
    storage: Storage, key: str, local: bool, folder: str | None, max_bytes: int
) -> tuple[BuildCache | None, str | None]:
    """The build cache in ``folder`` (if given), else why it cannot serve
    this run's post-processing."""
    why = why_unused(storage, key, local, folder) if folder else None
    cache = BuildCache(folder, max_bytes, key) if folder and not why else None
    return cache, why


def why_unused(storage: Storage, key: str, local: bool, folder: str) -> str | None:
    """Why a build cache in ``folder`` cannot serve this run, if it cannot."""
    if not local:
        return "the destination is not on local disk"
    if not key:
        return "the storage does not post-process"
    if not saves_as_files(storage):
        return (
            f"{type(storage).__name__} saves with a _save of its own (what it "
            "writes is not what it was given)"
        )
    if _inside(os.path.realpath(folder), storage.path("")):
        return f"'{folder}' is inside the destination (it would be served)"
    if found := source_folder_of(folder):
        return (
            f"'{folder}' is inside the static files folder "
            f"'{found}' (it would be collected)"
        )
    return vouch(storage)


def compressed(path: str, row: Processed) -> set[str]:
    """The outputs of ``path`` a compressor wrote: a file it was given (the
    source, or a hashed copy of it) with ".gz" or ".br" added."""
    given = {path, *row.outputs}
    variants = (name for name in row.outputs if name.endswith((".gz", ".br")))
    return {name for name in variants if name[:-3] in given}


def _inside(folder: str, root: str | None) -> bool:
    """Whether ``folder`` (a real path) is ``root`` or under it."""
    if not root:
        return False
    root = os.path.realpath(root)
    return os.path.commonpath([root, folder]) == root


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """A folder's entries; none if it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def _state(
    rows: Mapping[str, Processed], outputs: Mapping[str, str], out: BinaryIO
) -> None:
    """Write a state file a row at a time (never its whole text in memory)."""
    encoder = json.JSONEncoder()
    out.write(b'{"rows":[')
    for number, (path, row) in enumerate(sorted(rows.items())):
        out.write((b"," if number else b"") + encoder.encode(row.row(path)).encode())
    out.write(b'],"outputs":')
    for chunk in encoder.iterencode(outputs):
        out.write(chunk.encode())
    out.write(b"}")
