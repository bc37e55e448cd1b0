"""The record step: read the previous sync record, make and write the next one.

The format is :mod:`.record`'s; this module moves records in and out of the
destination storage, streamed both ways, and decides what the next record
says: every collected file the destination now holds (kept or written), with
what a listing showed right after, plus the previous record's other paths the
destination still has (``--delete`` may want them). A record that would say
nothing new is not written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import File
from django.core.management.base import CommandError

from . import __version__
from .backends.base import Backend, Listing, Remote
from .plan import saw_same
from .record import Entry, Processed, Record, RecordError, read
from .retry import PermanentError, Retry
from .sources import Source

#: A record larger than this is spooled to a temporary file while it is
#: saved, not held in memory (50,000 files make about 7 MB).
SPOOL_BYTES = 1024 * 1024


class Recorder:
    """Reads and writes one destination's sync record."""

    def __init__(
        self, backend: Backend, retry: Retry, name: str, warn: Callable[[str], None]
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.name = name
        self.warn = warn

    def load(self) -> Record | None:
        """The previous record; None (with a warning) if it is missing or
        cannot be trusted. A permanent storage error is raised."""
        fingerprint = self.backend.fingerprint()

        def load() -> Record | None:
            with self.backend.stream(self.name) as stream:
                return None if stream is None else read(stream, fingerprint)

        try:
            return self.retry("Reading the sync record", load)
        except RecordError as error:
            self.warn(f"Ignoring the sync record '{self.name}': {error}.")
        except (PermanentError, ImproperlyConfigured):
            raise
        except Exception as error:  # still failing after retries: know nothing
            reason = f"cannot be read ({type(error).__name__}: {error})"
            self.warn(f"Ignoring the sync record '{self.name}': {reason}.")
        return None

    def next(
        self,
        sources: Mapping[str, Source],
        previous: Record | None,
        listing: Listing | None,
        written: Mapping[str, Remote | None],
        kept: Collection[str],
        manifests: list[list[str]],
        postprocess: str | None,
        processed: dict[str, Processed],
        consumed: Collection[str] = (),
    ) -> Record:
        """This run's record.

        ``written`` maps each file this run wrote to what the backend saw
        right after (None: not known, so the destination is listed once more);
        ``kept`` holds the files found up to date; ``consumed`` the originals
        post-processing removed (recorded as written, with nothing seen);
        ``processed`` and ``postprocess`` say what the last complete
        post-process did, and with which settings.
        """
        old = previous.files if previous is not None else {}
        if listing is not None and None in written.values():
            now = self.retry("Listing the destination", self.backend.listing) or {}
            written = {path: seen or now.get(path) for path, seen in written.items()}
        files: dict[str, Entry] = {}
        for path, source in sources.items():
            if source.digest is None:
                continue
            if path in consumed:
                seen = None
            elif path in written:
                seen = written[path]
            elif path in kept:
                seen = None if listing is None else listing.get(path)
                entry = old.get(path)
                if entry is not None and seen is not None and saw_same(entry, seen):
                    seen = entry.seen  # as the record saw it: no needless rewrite
            else:
                continue
            digest = source.digest
            files[path] = Entry(digest.md5, digest.size, source.token, seen)
        for path, entry in old.items():
            if path not in sources and (listing is None or path in listing):
                files[path] = entry
        state = {"django": django.get_version(), "collectstatic_plus": __version__}
        if postprocess is not None:
            state["postprocess"] = postprocess
        return Record(self.backend.fingerprint(), files, manifests, state, processed)

    def save(self, new: Record, previous: Record | None, complete: bool) -> None:
        """Write ``new`` unless it says what ``previous`` does.

        A failure is a CommandError after a complete run, a warning after a
        partial one (the failure being reported then matters more).
        """
        # New source tokens alone (a fresh checkout) are worth a local write,
        # so later runs need not read every source again, but not an upload.
        if new.same_content(previous, tokens=self.backend.local):
            return
        try:
            self.retry("Writing the sync record", lambda: self._save(new))
        except RecordError as error:
            self.warn(f"Could not write the sync record: {error}.")
        except Exception as error:
            message = (
                f"Could not write the sync record: {type(error).__name__}: {error}"
            )
            if not complete:
                self.warn(message + ".")
                return
            raise CommandError(message) from error

    def _save(self, record: Record) -> None:
        """Write the record through the storage, replacing any previous one.

        On local disk it is written beside the target and renamed over it,
        so a reader sees the old record or the new one, never half of one.
        Elsewhere one upload replaces the object; a storage that would pick
        another name for an existing file has the old one deleted first.
        """
        import tempfile  # here: most re-runs write no record

        name, storage = self.name, self.backend.storage
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            record.write(spool)  # type: ignore[arg-type]
            content = File(spool, name=name)
            content.size = spool.tell()
            spool.seek(0)
            if self.backend.local:
                temporary = storage.save(f"{name}.{os.getpid()}.tmp", content)
                os.replace(storage.path(temporary), storage.path(name))
                return
            if not self.backend.overwrites_in_place and storage.exists(name):
                storage.delete(name)
            written = storage.save(name, content)
        if written != name:
            storage.delete(written)
            raise RecordError(
                f"the storage saved it as {written!r} instead of {name!r}"
            )
