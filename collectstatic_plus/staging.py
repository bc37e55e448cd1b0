"""Serve a storage's I/O while its own ``post_process`` runs.

Django's ManifestFilesMixin (and django-storages' S3ManifestStaticStorage)
asks the destination, one request at a time, whether each hashed name exists,
reads files back from it, and deletes then re-saves every CSS and JS file on
every run. :class:`Staging` keeps the storage's own ``post_process`` (so
names, rewritten contents and the manifest are exactly stock's) and answers
its storage calls from what this run knows:

- ``exists``: from the listing read before collecting, plus what this run
  wrote or deleted; a storage that cannot list is asked, once per name;
- ``open``: a collected file is read from its source, a file written during
  post-processing from what was staged;
- ``delete``: deferred, and dropped when the same name is saved again;
- ``_save``: a save of the content the destination already holds is a no-op;
  other saves are staged: a copy of a source file as its origin, rewritten
  bytes in a temporary file (never all of them in memory), and written on
  the worker pool (see :meth:`Staging.write_staged`);
- the manifest is written last, after every file it names has landed.

On local disk rewritten files are written at once (some post-processors
read them back); copies of collected files wait for the pool. For a storage
whose code we know (``known``), a collected file's hash is the digest the
run took. The storage gets these as instance attributes for the duration.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage

from .backends import backend_for
from .backends.base import Backend, Listing, unwrap
from .digest import Digest, HashingFile, digest_file
from .pool import TransferPool
from .record import Processed
from .retry import Retry
from .sources import Source
from .target import FlushError, SourceChanged, Spool, Staged, Target, named, staged_from
from .vouch import unhashed


class Staging:
    def __init__(
        self,
        storage: Storage,
        backend: Backend,
        sources: Mapping[str, Source],
        listing: Listing | None,
        workers: int,
        simulate: bool = False,
        retry: Retry | None = None,
        known: bool = False,
        force: bool = False,
        last: Mapping[str, Processed] | None = None,
        resave: bool = False,
        verify: bool = False,
    ) -> None:
        main = unwrap(storage)
        #: Dry run: stage and compare, write nothing at all.
        self.simulate = simulate
        self.retry = retry or Retry(attempts=1)
        self.main = Target(main)
        manifest = unwrap(getattr(main, "manifest_storage", main))
        self.manifest_target = self.main if manifest is main else Target(manifest)
        self.manifest_name = getattr(main, "manifest_name", None)
        self.backend = backend
        self.sources = sources
        self.listing = listing
        self.workers = workers
        self.local = backend.local
        self.known = known
        #: --force: write each output again, whatever is there; a hashed copy
        #: is known by its name (Django's pattern) or as ``last`` named it.
        self.force = force
        rows = (last or {}).values() if force else ()
        self.hashed = {row.hashed for row in rows if row.hashed}
        #: Every save is written, even of the bytes there (Plan.resaves).
        self.resave = resave
        self.overwrites = backend.overwrites_in_place
        self.staged: dict[str, Staged] = {}
        self.deleted: set[str] = set()
        self.asked: dict[str, bool] = {}
        #: Staged writes not made yet, by name.
        self.queue: dict[str, Staged] = {}
        self.manifest: Staged | None = None
        self.manifest_due = False
        #: The manifest left: its upload's ETag (S3, GCS), else MD5 (manifest_moved).
        self.published: str | None = None
        #: Names written to the destination, saves skipped as identical, and
        #: names deleted (stock deletes intermediate hashed copies).
        self.written: list[str] = []
        self.identical: list[str] = []
        self.removed: list[str] = []
        #: A dry run's compressor's variants (WhiteNoise writes them itself).
        self.variants: list[str] = []
        #: --verify: variants found with other bytes (hooks.dry_compressor).
        self.verify = verify
        self.altered: set[str] = set()
        #: What this run wrote, by name.
        self.landed: dict[str, Digest] = {}
        self.lock = threading.RLock()
        self.spool = Spool()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Patch the storage (and a separate manifest storage) for the block."""
        main, manifest = self.main.storage, self.manifest_target.storage
        try:
            main.exists = self._exists
            main.open = self._open
            main.size = self._size
            main.delete = self._delete
            main._save = self._save
            if self.known and self.main.file_hash is not None:
                main.file_hash = self._file_hash
            if manifest is not main:
                manifest._save = self._save_manifest
                manifest.delete = self._delete_manifest
            yield
        finally:
            self.main.restore()
            self.manifest_target.restore()

    def close(self, failed: bool = False) -> list[str]:
        """Remove what was spooled. If the attempt ``failed`` (or was dropped)
        before its manifest landed, return what it wrote where nothing was,
        for the sync record to hold as ours; on local disk, remove it first
        (stock leaves none; elsewhere deletes after a failure may fail too)
        and return what could not be removed."""
        # Whether the manifest may have landed (a write can fail after it did,
        # unless renamed into place): then every file it names must stay.
        landed = self.manifest_name in self.written
        renamed = self.local and self.manifest_target.renames
        landed = landed or (self.manifest_due and not renamed)
        left: set[str] = set()
        if failed and self.listing is not None and not landed:
            left = set(self.written) - set(self.listing) - set(self.sources)
        for name in sorted(left) if self.local else ():
            with contextlib.suppress(Exception):  # (Stopped: no lease, no delete)
                self.retry(f"Deleting '{name}'", partial(self.main.delete, name))
                left.discard(name)
        self.spool.close()
        return sorted(left)

    def _exists(self, name: str) -> bool:
        with self.lock:
            if name in self.staged:
                return True
            if name in self.deleted:
                return False
            if name in self.sources:
                return True
            if self.force and (unhashed(name) in self.sources or name in self.hashed):
                return False  # --force: a collected file's hashed copy is written again
            if self.listing is not None:
                # It holds files; FileSystemStorage.exists() also says yes to
                # a folder (a CSS url() may name one).
                return name in self.listing or (
                    self.backend.local and os.path.isdir(self.main.storage.path(name))
                )
            if name not in self.asked:
                self.asked[name] = bool(self.main.exists(name))
            return self.asked[name]

    def _open(self, name: str, mode: str = "rb") -> Any:
        with self.lock:
            staged = self.staged.get(name)
        if staged is not None:
            return self._read(name, staged)
        source = self.sources.get(name)
        if source is not None:
            return source.storage.open(source.path, mode)
        return self.main.open(name, mode)

    def _read(self, name: str, staged: Staged) -> File:  # type: ignore[type-arg]
        if staged.origin is not None:
            storage, path = staged.origin
            return storage.open(path, "rb")
        if staged.spool is not None:
            return File(open(staged.spool, "rb"), name=name)
        return self.main.open(name, "rb")  # type: ignore[no-any-return]

    def _size(self, name: str) -> int:
        with self.lock:
            staged = self.staged.get(name)
        if staged is not None:
            return staged.digest.size
        remote = None if self.listing is None else self.listing.get(name)
        if remote is not None and name not in self.sources:
            return remote.size
        return int(self.main.size(name))

    def _file_hash(self, name: str, content: Any = None) -> str | None:
        """Django's file_hash (the MD5's first 12 hex digits), from the
        digest the run took of a collected file instead of reading it."""
        digest = getattr(content, "digest", None)
        if isinstance(digest, Digest):
            return digest.md5[:12]
        assert self.main.file_hash is not None
        return self.main.file_hash(name, content)  # type: ignore[no-any-return]

    def _delete(self, name: str) -> None:
        with self.lock:
            staged = self.staged.pop(name, None)
            self.queue.pop(name, None)
            self.deleted.add(name)
        if staged is not None and staged.spool is not None:
            with contextlib.suppress(OSError):
                os.remove(staged.spool)

    def _save(self, name: str, content: Any) -> str:
        staged, data = staged_from(content)
        with self.lock:
            self.deleted.discard(name)
        if self.manifest_target is self.main and name == self.manifest_name:
            self.manifest = self.spool.keep(staged, data)
            return name
        if self._holds(name, staged.digest):
            with self.lock:
                self.staged[name] = staged if data is None else Staged(staged.digest)
                if name not in self.landed:  # there before this run
                    self.identical.append(name)
            return name
        if data is not None and self.local and not self.simulate:
            # Rewritten files are written at once (post-processors may read
            # them back from disk), then read back from there.
            with named(name):
                self._write(name, staged, data)
            with self.lock:
                self.staged[name] = staged
            return name
        staged = self.spool.keep(staged, data)
        with self.lock:
            self.staged[name] = self.queue[name] = staged
        return name

    def _delete_manifest(self, name: str) -> None:
        """Not the manifest (save_manifest deletes it first): the flush replaces it."""
        if name != self.manifest_name and not self.simulate:
            self.manifest_target.delete(name)

    def _save_manifest(self, name: str, content: Any) -> str:
        self.manifest = self.spool.keep(*staged_from(content))
        return name

    def _holds(self, name: str, digest: Digest) -> bool:
        """Whether the destination already has exactly this content at name:
        as this run wrote it (a later pass saves most files again), or as
        it was before."""
        with self.lock:
            if self.landed.get(name) == digest:
                return True
        if self.force or self.resave:
            return False
        remote = None if self.listing is None else self.listing.get(name)
        if self.local:
            return remote is not None and self.backend.digest(name) == digest
        return remote is not None and Digest(remote.md5 or "", remote.size) == digest

    def _write(self, name: str, staged: Staged, data: bytes | None = None) -> str:
        sent: list[Digest | None] = []  # what a source's read gave, if known

        def attempt() -> str:
            # (File.__bool__ is its name's: a nameless File is false.)
            opened = File(io.BytesIO(data), name=name) if data is not None else None
            with opened if opened is not None else self._read(name, staged) as content:
                if staged.origin is not None:  # hashed as it is read
                    content = HashingFile(content.file, content.name)
                # On local disk, renamed into place: an interrupted write
                # never leaves a partial file under a hashed name.
                if self.local and self.main.replace(name, content):
                    saved = name
                else:
                    saved = self.main.write(name, content, self.overwrites)
                sent.append(getattr(content, "digest", None))
                return saved

        saved = self.retry(f"Writing '{name}'", attempt)
        # (Read again if the storage read the file itself, as AzureStorage does.)
        if staged.origin and (sent[-1] or digest_file(*staged.origin)) != staged.digest:
            # Its name was made from other bytes: never serve them under it.
            self.retry(f"Deleting '{saved}'", partial(self.main.delete, saved))
            raise SourceChanged(f"'{staged.origin[1]}' changed during the run")
        with self.lock:
            self.written.append(name)
            self.landed[name] = staged.digest
        return saved

    def write_staged(self) -> None:
        """Write what is staged (not the manifest), on the worker pool."""
        if self.simulate:
            return
        with self.lock:
            queue, self.queue = sorted(self.queue.items()), {}
        with TransferPool(self.workers) as pool:
            for name, staged in queue:
                pool.submit(name, self._write, name, staged)
        if pool.failures:
            raise FlushError(pool.failures)

    def note_variant(self, name: str, variant: str, copied: set[str]) -> None:
        """A compressor's ``variant`` of ``name``: written (a dry run's would
        be, unless alike: nothing new, collected over or resaved, and there)."""
        new = {name, variant} & copied or name in self.queue or name in self.written
        new = new or self.force or self.resave or variant in self.altered
        if not self.simulate or new or variant not in (self.listing or {}):
            self.variants.append(variant)

    def unlinked(self, names: set[str]) -> None:
        """The storage removed these by itself (WhiteNoise's delete_files)."""
        with self.lock:
            self.written = [name for name in self.written if name not in names]
            self.landed = {k: v for k, v in self.landed.items() if k not in names}

    def outcome(self) -> dict[str, object]:
        """What post-processing wrote (or, simulated, would write)."""
        manifest = self.manifest
        if not self.simulate:
            changes = self.manifest_name in self.written
        else:
            changes = manifest is not None and not self._published(manifest.digest)
        written = set(self.queue) | set(self.written) | set(self.variants)
        writes = sorted(written - {self.manifest_name})
        outcome: dict[str, object] = {
            "status": "simulated" if self.simulate else "ran",
            "would_write" if self.simulate else "written": writes,
            "already_there": sorted(set(self.identical)),
            "manifest_changes": changes,
        }
        if removed := self.deletions() if self.simulate else self.removed:
            outcome["would_delete" if self.simulate else "deleted"] = removed
        return outcome

    def _published(self, digest: Digest) -> bool:
        """Whether the manifest is already this one (where it is kept)."""
        name, target = self.manifest_name, self.manifest_target
        if name is None or target is self.main:
            return name is not None and self._holds(name, digest)
        with contextlib.suppress(Exception):  # not there, or unreadable: no
            return digest_file(target.storage, name) == digest
        return False

    def flush(self) -> None:
        """Write what is staged, then deletions, then the manifest."""
        self.write_staged()
        for name in self.deletions():
            self.retry(f"Deleting '{name}'", partial(self.main.delete, name))
            self.removed.append(name)
        # One this run wrote (on local disk) was not written, in the end.
        gone = {name for name in self.removed if name in self.landed}
        self.written = [name for name in self.written if name not in gone]
        self.removed = [name for name in self.removed if name not in gone]
        if self.manifest is not None and self.manifest_name is not None:
            self.manifest_due = True  # (from now on it may land, failing or not)
            with named(self.manifest_name):
                self._flush_manifest(self.manifest_name, self.manifest)

    def deletions(self) -> list[str]:
        """The deletions left standing (stock deletes intermediate hashed
        copies) of what is there: a name staged again is no deletion."""
        names = sorted(self.deleted - set(self.staged))
        if not self.local and self.listing is not None:
            return [name for name in names if name in self.listing]
        for name in names:  # each asked once (as _exists asks), unless written
            if name not in self.asked or name in self.landed:
                self.asked[name] = bool(self.main.exists(name))
        return [name for name in names if self.asked[name]]

    def _flush_manifest(self, name: str, staged: Staged) -> None:
        target = self.manifest_target
        self.published = staged.digest.md5
        if not (self.force or self.resave) and self._published(staged.digest):
            self.identical.append(name)  # (as a dry run said: no change)
            return
        overwrites = self.overwrites
        if target is not self.main:
            overwrites = backend_for(target.storage).overwrites_in_place

        def attempt() -> None:
            with self._read(name, staged) as content:
                # A reader must never find no manifest: renamed into place
                # where it can.
                if not target.replace(name, content):
                    target.write(name, content, overwrites)

        with self.backend.saving():
            self.retry(f"Writing '{name}'", attempt)
            seen = self.backend.saved(name, staged.digest)
        self.written.append(name)
        if seen is not None and seen.etag and target is self.main:
            self.published = seen.etag
