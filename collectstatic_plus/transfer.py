"""Carry out each file's decision, printing what stock prints for the same act.

This is where a file is uploaded or copied: :meth:`Copier.copy` saves the
source through the destination storage's own ``save`` (hashing it as the
storage reads it), after deleting the old file where the storage would not
overwrite it. Called from the worker pool, one file per call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from django.core.files.storage import Storage

from .backends.base import Backend, Listing, Remote, unwrap
from .digest import Digest, HashingFile, digest_file
from .plan import Action, Decision
from .progress import human_size
from .report import Report
from .retry import Retry
from .sources import Source, shadowed, stored_names

#: Stock's rule for a destination we know nothing about (its ``delete_file``):
#: False if the file is unmodified (stock then counts and logs it itself).
StockRule = Callable[[str, str, Storage], bool]
Log = Callable[..., None]


class Copier:
    """Runs decisions, and remembers what became of each file."""

    def __init__(
        self,
        storage: Storage,
        backend: Backend,
        retry: Retry,
        report: Report,
        log: Log,
        stock_rule: StockRule,
        dry_run: bool,
    ) -> None:
        self.storage = storage
        self.backend = backend
        self.retry = retry
        self.report = report
        self.log = log
        self.stock_rule = stock_rule
        self.dry_run = dry_run
        #: Stock's lists: paths copied (or, dry, that would be), and found
        #: unmodified (but those stock's own rule counted itself).
        self.copied: list[str] = []
        self.unmodified: list[str] = []
        #: What the destination showed right after each file this run wrote
        #: (None: not known), and the files it already held. Workers add to
        #: these lists and dicts: each addition is atomic.
        self.written: dict[str, Remote | None] = {}
        self.kept: dict[str, None] = {}  # (a set: 5x the memory at 5,000 files)
        #: Names the storage saved files under other than their paths.
        self.renamed: list[str] = []
        #: Sources stored under an earlier source's name, with its path
        #: (see :meth:`claim`).
        self.shadowed: dict[str, str] = {}
        #: In each worker, the last name the storage's exists() was asked
        #: about and its answer (see :meth:`watching`).
        self.answer = threading.local()

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While files are copied, keep what the storage's ``exists`` says:
        stock's rule asks it, and a file the rule replaces was there (no
        request more to know it)."""
        storage = unwrap(self.storage)
        had, exists = vars(storage).get("exists"), storage.exists

        def watched(name: str) -> bool:
            found = exists(name)
            self.answer.said = (name, bool(found))
            return found

        storage.exists = watched  # type: ignore[method-assign]
        try:
            yield
        finally:  # (as it was: one the project set on the instance stays)
            if had is None:
                del storage.exists
            else:
                storage.exists = had  # type: ignore[method-assign]

    def claim(self, sources: Mapping[str, Source], listing: Listing | None) -> None:
        """Note the sources that the storage stores under the name of an
        earlier one: the first is saved there, as by stock, and the later
        ones are left. A dry run writes nothing, so stock's finds a later
        one's file only where it was there before."""
        later = shadowed(sources, stored_names(sources, self.backend.listed_name))
        if self.dry_run:
            there = listing or {}  # (keyed by the sources: the first holds it)
            later = {path: first for path, first in later.items() if first in there}
        self.shadowed = later

    def run(self, source: Source, decision: Decision) -> None:
        action = decision.action
        if source.prefixed_path in self.shadowed:
            self.shadow(source)
        elif action is Action.COPY:
            self.copy(source, decision.exists, decision.old_size)
        elif action is Action.SKIP:
            self.skip(source)
        elif action is Action.CHECK:
            self.check(source, decision.exists, decision.old_size)
        else:
            self.stock(source)

    def skip(self, source: Source) -> None:
        if source.prefixed_path in self.shadowed:
            self.shadow(source)
            return
        self.keep(source)
        self.unmodified.append(source.prefixed_path)
        self.log(f"Skipping '{source.path}' (not modified)")

    def shadow(self, source: Source) -> None:
        """Not saved: an earlier source is saved under the name the storage
        gives this one. Stock finds that file there, newer: "unmodified".
        Not kept either: the sync record does not claim its content."""
        name, first = source.prefixed_path, self.shadowed[source.prefixed_path]
        self.unmodified.append(name)
        self.log(f"Skipping '{source.path}' (not modified)")
        reason = f"stored under the same name as '{first}', which came first"
        self.report.file(name, "conflict", source=source.origin, reason=reason)

    def check(self, source: Source, exists: bool | None, old_size: int | None) -> None:
        """Read what the destination holds and compare it with the source."""
        name = source.prefixed_path
        held = self.retry(f"Reading '{name}'", lambda: self.backend.digest(name))
        if held == source.digest:
            self.skip(source)
            return
        if exists is None:
            exists = held is not None
        self.copy(source, exists, held.size if held else old_size)

    def stock(self, source: Source) -> None:
        """Stock's rule (exists, then modification times), for unknown storages;
        content decides for a minified source (its time is the original's)."""
        if getattr(source.storage, "transforms", False):
            self.check(source, None, None)
            return
        name, self.answer.said = source.prefixed_path, None
        if self.stock_rule(source.path, name, source.storage):
            # It said and made the deletion if its exists() found the file.
            self.copy(source, False, replaced=self.answer.said == (name, True))
        else:
            self.keep(source, reason="modification time")

    def keep(self, source: Source, reason: str | None = None) -> None:
        """The destination holds this content: remember it, and report it."""
        assert source.digest is not None
        self.kept[source.prefixed_path] = None
        if self.report.keep_files:
            self.report.file(
                source.prefixed_path,
                "unchanged",
                source=source.origin,
                size=source.digest.size,
                md5=source.digest.md5,
                reason=reason,
            )

    def copy(
        self,
        source: Source,
        exists: bool | None,
        old_size: int | None = None,
        replaced: bool = False,
    ) -> None:
        """Save the source, deleting first what ``exists`` there (unless
        stock's rule ``replaced`` it: deleted it, or pretended to)."""
        storage, name = self.storage, source.prefixed_path
        if exists is None:
            exists = self.retry(f"Checking '{name}'", lambda: storage.exists(name))
        change = "changed" if exists or replaced else "new"
        if exists and self.dry_run:
            self.log(f"Pretending to delete '{source.path}'")
        elif exists:  # (said as stock says it, even where a write replaces it)
            self.log(f"Deleting '{source.path}'")
            if not self.backend.overwrites_in_place:
                self.retry(f"Deleting '{name}'", lambda: storage.delete(name))
        self.backend.check_name(name)  # the upload would fail: so does a dry run
        source_path = source.storage.path(source.path)
        if self.dry_run:
            self.log(f"Pretending to copy '{source_path}'", level=1)  # stock's
            size = human_size((source.digest or self.read(source)).size)
            verb = "copy" if self.backend.local else "upload"
            self.log(f"Would {verb} ({change}) {name} ({size})", level=1)
        else:
            self.log(f"Copying '{source_path}'", level=2)
            saved, written = self.retry(f"Writing '{name}'", lambda: self.save(source))
            # What landed, if the save read it through (a source edited since
            # it was read to decide is recorded as its new bytes).
            source.digest = written or source.digest or self.read(source)
            # A storage may save under another name (stock accepts that); the
            # sync record then does not claim this path holds the content.
            if saved == name:
                self.written[name] = self.backend.saved(name, source.digest)
            elif self.backend.local and os.path.isdir(storage.path(name)):
                self.retry(f"Deleting '{saved}'", lambda: storage.delete(saved))
                raise IsADirectoryError(
                    "a folder is there: the storage saved the file as "
                    f"'{saved}' (deleted again)"
                )
            else:
                self.renamed.append(saved)
        digest = source.digest = source.digest or self.read(source)  # a dry run's
        self.copied.append(name)
        self.report.file(
            name,
            change,
            source=source.origin,
            size=digest.size,
            old_size=old_size if exists else None,
            md5=digest.md5,
        )

    def save(self, source: Source) -> tuple[str, Digest | None]:
        """One attempt at saving: the source is opened afresh each time."""
        with source.storage.open(source.path) as handle:
            content = HashingFile(handle.file, handle.name)
            saved = str(self.storage.save(source.prefixed_path, content))
            return saved, content.digest

    @staticmethod
    def read(source: Source) -> Digest:
        """The source's digest, read again (the storage did not read it through)."""
        return digest_file(source.storage, source.path)
