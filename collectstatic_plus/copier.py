"""Carry out one file's decision, printing what stock prints for the same act."""

from __future__ import annotations

import threading
from typing import Protocol

from django.core.files.storage import Storage

from .backends import Backend
from .plan import Action, Decision
from .record import Entry
from .report import Report
from .retry import Retry
from .sources import Digest, HashingFile, Source, State, digest_file


class Host(Protocol):
    """The parts of the collectstatic command the copier reports to."""

    storage: Storage
    dry_run: bool
    verbosity: int
    copied_files: list[str]
    unmodified_files: list[str]

    def log(self, msg: str, level: int = 2) -> None: ...

    def delete_file(
        self, path: str, prefixed_path: str, source_storage: Storage
    ) -> bool: ...


class Copier:
    """Runs decisions; marks each source with what became of it.

    A source's ``state`` and ``content`` say what landed (with the content
    written, as the next record's entry, which the collector completes),
    what was found up to date, and what a dry run would write.
    """

    def __init__(
        self, host: Host, backend: Backend, report: Report, retry: Retry | None = None
    ) -> None:
        self.host = host
        self.backend = backend
        self.report = report
        self.retry = retry or Retry(attempts=1)
        #: How many files this run wrote.
        self.written = 0
        self._lock = threading.Lock()

    def run(self, source: Source, digest: Digest | None, decision: Decision) -> None:
        action = decision.action
        if action is Action.COPY:
            self.copy(source, digest, decision.exists, decision.old_size)
            return
        assert digest is not None, "only a copy may learn the digest as it goes"
        if action is Action.SKIP:
            self.skip(source, digest)
        elif action is Action.CHECK:
            self.check(source, digest, decision.exists, decision.old_size)
        else:
            self.stock(source, digest)

    def skip(self, source: Source, digest: Digest) -> None:
        self.keep(source, digest)
        self.host.unmodified_files.append(source.prefixed_path)
        if self.host.verbosity >= 2:
            self.host.log(f"Skipping '{source.path}' (not modified)")

    def save(self, source: Source, name: str) -> tuple[str, Digest | None]:
        """One attempt at saving: the source is opened afresh each time."""
        with source.storage.open(source.path) as handle:
            content = HashingFile(handle.file, handle.name)
            saved = str(self.host.storage.save(name, content))
            return saved, content.digest

    def check(
        self,
        source: Source,
        digest: Digest,
        exists: bool | None,
        old_size: int | None = None,
    ) -> None:
        name = source.prefixed_path
        held = self.retry(f"Reading '{name}'", lambda: self.backend.digest(name))
        if held == digest:
            self.skip(source, digest)
            return
        if exists is None:
            exists = held is not None
        self.copy(source, digest, exists, held.size if held else old_size)

    def stock(self, source: Source, digest: Digest) -> None:
        """Stock's rule (exists, then modification times), for unknown storages."""
        if self.host.delete_file(source.path, source.prefixed_path, source.storage):
            self.copy(source, digest, exists=False)
        else:  # stock's delete_file counted it as unmodified and logged it
            self.keep(source, digest, reason="modification time")

    def keep(self, source: Source, digest: Digest, reason: str | None = None) -> None:
        """Remember that the destination holds this content, and report it."""
        source.content, source.state = digest, State.KEPT
        if self.report.keep_files:  # a no-change run keeps every file: stay lean
            self.report.file(
                source.prefixed_path,
                "unchanged",
                source=source.origin,
                size=digest.size,
                md5=digest.md5,
                reason=reason,
            )

    def landed(self, name: str, digest: Digest) -> Digest:
        """What a source holds for a file it wrote: an Entry with what the
        backend saw, or only the content where the backend can tell that
        again when the record is written (``seen_again``): then nothing more
        is held per file meanwhile."""
        backend = self.backend
        content = digest if type(digest) is Digest else Digest(digest.md5, digest.size)
        if backend.sees_later:
            return content
        seen = backend.saved(name, content)
        if seen is not None and seen == backend.seen_again(name, content):
            return content
        return Entry(content.md5, content.size, seen)

    def copy(
        self,
        source: Source,
        digest: Digest | None,
        exists: bool | None,
        old_size: int | None = None,
    ) -> None:
        host, name = self.host, source.prefixed_path
        if exists is None:
            exists = self.retry(f"Checking '{name}'", lambda: host.storage.exists(name))
        if exists and not self.backend.overwrites_in_place:
            if host.dry_run:
                host.log(f"Pretending to delete '{source.path}'")
            else:
                host.log(f"Deleting '{source.path}'")
                self.retry(f"Deleting '{name}'", lambda: host.storage.delete(name))
        source_path = source.storage.path(source.path)
        if host.dry_run:
            host.log(f"Pretending to copy '{source_path}'", level=1)
            digest = digest or digest_file(source.storage, source.path)
            source.content, source.state = digest, State.PRETENDED
        else:
            host.log(f"Copying '{source_path}'", level=2)
            saved, written = self.retry(
                f"Writing '{name}'", lambda: self.save(source, name)
            )
            digest = digest or written or digest_file(source.storage, source.path)
            # A storage may save under another name (stock accepts that); the
            # sync record then does not claim this path holds the content.
            if saved == name:
                landed = self.landed(name, digest)
                source.content, source.state = landed, State.WRITTEN
                with self._lock:
                    self.written += 1
        host.copied_files.append(name)
        self.report.file(
            name,
            "changed" if exists else "new",
            source=source.origin,
            size=digest.size,
            old_size=old_size if exists else None,
            md5=digest.md5,
        )
