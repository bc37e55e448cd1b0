"""Serve a storage's I/O while its own ``post_process`` runs.

Django's ManifestFilesMixin (and django-storages' S3ManifestStaticStorage)
asks the destination, one request at a time, whether each hashed name exists,
reads files back from it, and deletes then re-saves every CSS and JS file on
every run. :class:`Staging` keeps the backend's own ``post_process`` (so names,
rewritten contents and the manifest are exactly stock's) and answers its
storage calls from what this run knows:

- ``exists``: from the listing read before collecting, plus what this run
  wrote or deleted; a storage that cannot list is asked, once per name;
- ``open``: a file collected in this run is read from its local source, a
  file written during post-processing from the staged content;
- ``delete``: deferred, and dropped when the same name is saved again;
- ``_save``: a save of the content the destination already holds is a no-op;
  other saves are written at once on local disk (post-processors such as
  WhiteNoise read them back from disk), and queued for the worker pool
  elsewhere;
- the manifest is written last, after every file it names has landed.

The storage instance gets these as instance attributes for the duration and
loses them afterwards, so later uses of ``staticfiles_storage`` see nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage

from .backends import backend_for
from .backends.base import Backend, Listing, Remote
from .digest import Digest, digest_bytes, digest_file
from .pool import TransferPool
from .retry import Retry

FoundFiles = dict[str, tuple[Storage, str]]
PATCHED = ("exists", "open", "delete", "_save", "size")


@dataclass
class Staged:
    """A write post-processing asked for: bytes, or a source file to copy."""

    digest: Digest
    data: bytes | None = None
    origin: tuple[Storage, str] | None = None

    def open(self) -> File:  # type: ignore[type-arg]
        if self.data is not None:
            return File(io.BytesIO(self.data))
        assert self.origin is not None
        storage, path = self.origin
        return storage.open(path, "rb")


class SourceFile(File):  # type: ignore[type-arg]
    """A collected file as post_process opens it, knowing where it came from."""

    origin: tuple[Storage, str]


class Sources:
    """Stands in for a finder's storage in ``post_process``'s ``paths``."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def open(self, path: str, mode: str = "rb") -> SourceFile:
        handle = self._storage.open(path, mode)
        wrapped = SourceFile(handle.file, handle.name)
        wrapped.origin = (self._storage, path)
        return wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


class Target:
    """A storage being post-processed into, and its own (unpatched) methods."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.exists = storage.exists
        self.open = storage.open
        self.size = storage.size
        self.delete = storage.delete
        self._save = storage._save

    def write(self, name: str, staged: Staged, overwrites: bool) -> str:
        if not overwrites and self.exists(name):
            self.delete(name)
        with staged.open() as content:
            return str(self._save(name, content))

    def replace(self, name: str, staged: Staged) -> bool:
        """On local disk, write beside ``name`` and rename over it (atomic).

        False if the storage has no local path.
        """
        try:
            final = self.storage.path(name)
        except NotImplementedError:
            return False
        saved = f"{name}.{os.getpid()}.tmp"
        try:
            with staged.open() as content:
                saved = self._save(saved, content)
            os.replace(self.storage.path(saved), final)
        except BaseException:  # Ctrl-C included: leave no temporary behind
            with contextlib.suppress(OSError):
                os.remove(self.storage.path(saved))
            raise
        return True

    def restore(self) -> None:
        for name in PATCHED:
            self.storage.__dict__.pop(name, None)


class Staging:
    def __init__(
        self,
        storage: Storage,
        backend: Backend,
        found_files: FoundFiles,
        listing: Listing | None,
        workers: int,
        simulate: bool = False,
        retry: Retry | None = None,
    ) -> None:
        main = unwrap(storage)
        #: Dry run: stage and compare, write nothing at all.
        self.simulate = simulate
        self.retry = retry or Retry(attempts=1)
        self.main = Target(main)
        manifest_storage = unwrap(getattr(main, "manifest_storage", main))
        self.manifest_target = (
            self.main if manifest_storage is main else Target(manifest_storage)
        )
        self.manifest_name = getattr(main, "manifest_name", None)
        self.backend = backend
        self.found_files = found_files
        self.listing = listing
        self.workers = workers
        self.local = backend.local
        self.overwrites = backend.overwrites_in_place
        self.staged: dict[str, Staged] = {}
        self.deleted: set[str] = set()
        self.asked: dict[str, bool] = {}
        self.queue: dict[str, Staged] = {}
        self.manifest: Staged | None = None
        #: Names written to the destination, and saves skipped as identical.
        self.written: list[str] = []
        self.identical: list[str] = []
        self.lock = threading.RLock()

    def paths(self) -> FoundFiles:
        """``found_files`` with sources that remember their origin when opened."""
        return {
            name: (Sources(storage), path)  # type: ignore[misc]
            for name, (storage, path) in self.found_files.items()
        }

    @contextmanager
    def active(self) -> Iterator[None]:
        """Patch the storage (and a separate manifest storage) for the block."""
        main, manifest = self.main.storage, self.manifest_target.storage
        try:
            main.exists = self._exists
            main.open = self._open
            main.size = self._size
            main.delete = self._delete
            main._save = self._save
            if manifest is not main:
                manifest._save = self._save_manifest
            yield
        finally:
            self.main.restore()
            self.manifest_target.restore()

    # Reads -------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        with self.lock:
            if name in self.staged:
                return True
            if name in self.deleted:
                return False
            if name in self.found_files:
                return True
            if self.listing is not None:
                return name in self.listing
            if name not in self.asked:
                self.asked[name] = bool(self.main.exists(name))
            return self.asked[name]

    def _open(self, name: str, mode: str = "rb") -> Any:
        with self.lock:
            staged = self.staged.get(name)
        if staged is not None:
            return staged.open()
        if name in self.found_files:
            storage, path = self.found_files[name]
            return storage.open(path, mode)
        return self.main.open(name, mode)

    def _size(self, name: str) -> int:
        with self.lock:
            staged = self.staged.get(name)
        if staged is not None:
            return staged.digest.size
        remote = None if self.listing is None else self.listing.get(name)
        if remote is not None and name not in self.found_files:
            return remote.size
        return int(self.main.size(name))

    # Writes ------------------------------------------------------------

    def _delete(self, name: str) -> None:
        with self.lock:
            self.staged.pop(name, None)
            self.queue.pop(name, None)
            self.deleted.add(name)

    def _save(self, name: str, content: Any) -> str:
        staged = _stage(content)
        with self.lock:
            self.deleted.discard(name)
            if self.manifest_target is self.main and name == self.manifest_name:
                self.manifest = staged
                return name
            self.staged[name] = staged
        if self._holds(name, staged.digest):
            self.identical.append(name)
            return name
        if self.simulate:
            with self.lock:
                self.queue[name] = staged
            return name
        if self.local:
            return self._write(name, staged)
        with self.lock:
            self.queue[name] = staged
        return name

    def _save_manifest(self, name: str, content: Any) -> str:
        self.manifest = _stage(content)
        return name

    def _holds(self, name: str, digest: Digest) -> bool:
        """Whether the destination already has exactly this content at name."""
        remote = None if self.listing is None else self.listing.get(name)
        if self.local:
            return remote is not None and self.backend.digest(name) == digest
        return _same(remote, digest)

    def _write(self, name: str, staged: Staged) -> str:
        # On local disk, renamed into place: an interrupted write never leaves
        # a partial file under a hashed name (nothing would ever rewrite it).
        if self.local and self.main.replace(name, staged):
            with self.lock:
                self.written.append(name)
            return name
        saved = self.retry(
            f"Writing '{name}'", lambda: self.main.write(name, staged, self.overwrites)
        )
        with self.lock:
            self.written.append(name)
        return saved

    def outcome(self) -> dict[str, object]:
        """What post-processing wrote (or, simulated, would write)."""
        manifest = self.manifest
        if not self.simulate:
            changes = self.manifest_name in self.written
        else:
            changes = manifest is not None and not (
                self.manifest_target is self.main
                and self.manifest_name is not None
                and self._holds(self.manifest_name, manifest.digest)
            )
        writes = sorted((set(self.queue) | set(self.written)) - {self.manifest_name})
        return {
            "status": "simulated" if self.simulate else "ran",
            "would_write" if self.simulate else "written": writes,
            "already_there": sorted(set(self.identical)),
            "manifest_changes": changes,
        }

    def flush(self) -> None:
        """Upload what is queued, then deletions, then the manifest."""
        with TransferPool(self.workers) as pool:
            for name, staged in sorted(self.queue.items()):
                pool.submit(name, self._write, name, staged)
        if pool.failures:
            raise FlushError(pool.failures)
        # Deletions left standing (stock deletes intermediate hashed copies);
        # a name this run staged and dropped never reached the destination.
        for name in sorted(self.deleted - set(self.staged)):
            if self._existed(name):
                self.retry(f"Deleting '{name}'", partial(self.main.delete, name))
        if self.manifest is not None and self.manifest_name is not None:
            self._flush_manifest(self.manifest_name, self.manifest)

    def _existed(self, name: str) -> bool:
        if self.local or self.listing is None:
            return bool(self.main.exists(name))
        return name in self.listing

    def _flush_manifest(self, name: str, staged: Staged) -> None:
        target = self.manifest_target
        if target is self.main and self._holds(name, staged.digest):
            self.identical.append(name)
            return
        if target is self.main:
            overwrites = self.overwrites
        else:
            overwrites = backend_for(target.storage).overwrites_in_place
        # A reader must never find no manifest: renamed into place where it can.
        if not target.replace(name, staged):
            self.retry(
                f"Writing '{name}'", lambda: target.write(name, staged, overwrites)
            )
        self.written.append(name)


class FlushError(Exception):
    def __init__(self, failures: list[Any]) -> None:
        super().__init__(f"{len(failures)} post-processed file(s) could not be written")
        self.failures = failures


def _stage(content: Any) -> Staged:
    origin = getattr(content, "origin", None)
    if origin is not None:
        storage, path = origin
        return Staged(digest_file(storage, path), origin=origin)
    if hasattr(content, "seek"):
        content.seek(0)
    data = content.read()
    if isinstance(data, str):
        data = data.encode()
    return Staged(digest_bytes(data), data=data)


def _same(remote: Remote | None, digest: Digest) -> bool:
    return (
        remote is not None and remote.size == digest.size and remote.md5 == digest.md5
    )


def unwrap(storage: Any) -> Storage:
    """The object behind ``staticfiles_storage``'s LazyObject."""
    wrapped = storage.__dict__.get("_wrapped")
    return wrapped if isinstance(wrapped, Storage) else storage
