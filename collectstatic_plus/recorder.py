"""The record step: read the previous sync record, write the next one.

The previous record's entries for collected paths go onto their sources
(``Source.recorded``). After the transfer, every source the destination holds
is *settled*: its content becomes its entry in the next record, sharing the
previous record's objects where nothing changed. A record that would say
nothing new is not written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from . import __version__, record
from .backends import Backend, Listing, Remote
from .onsources import Recorded, Settled
from .plan import saw_same
from .record import Entry, Record, RecordError
from .retry import PermanentError, Retry
from .sources import Source, State


class Recorder:
    """Reads and writes one destination's sync record for one run."""

    def __init__(
        self,
        backend: Backend,
        retry: Retry,
        sources: Mapping[str, Source],
        name: str,
        warn: Callable[[str], None],
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.sources = sources
        self.name = name
        self.warn = warn

    def load(self) -> Record | None:
        """The previous record, its entries for sources held on them; None
        (with a warning) if it is missing or cannot be trusted.

        A permanent storage error is raised for the caller to report.
        """
        files = Recorded(self.sources)

        def load() -> Record | None:
            files.clear()  # from an attempt that failed half-way
            fingerprint = self.backend.fingerprint()
            return record.load(self.backend, self.name, fingerprint, files)

        try:
            return self.retry("Reading the sync record", load)
        except RecordError as error:
            self.warn(f"Ignoring the sync record '{self.name}': {error}.")
        except (PermanentError, ImproperlyConfigured):
            files.clear()
            raise
        except Exception as error:  # still failing after retries: know nothing
            reason = f"cannot be read ({type(error).__name__}: {error})"
            self.warn(f"Ignoring the sync record '{self.name}': {reason}.")
        files.clear()
        return None

    def save(self, new: Record, previous: Record | None, complete: bool) -> None:
        """Write ``new`` unless it says what ``previous`` does.

        A failure is a CommandError after a complete run, a warning after a
        partial one (the failure being reported then matters more).
        """
        if new.same_content(previous, tokens=self.backend.local):
            # New source tokens alone (a fresh checkout) are worth a local
            # write, so later runs need not read every source again, but not
            # an upload: a fresh checkout uploads nothing.
            return
        try:
            self.retry(
                "Writing the sync record",
                lambda: record.save(self.backend, self.name, new),
            )
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

    def next(
        self,
        previous: Record | None,
        listing: Listing | None,
        manifests: list[list[str]],
        postprocess: str | None,
    ) -> Record:
        """This run's record: every source the destination holds, settled
        (see :meth:`settle`), and the previous record's other paths that the
        destination still has (``--delete`` may want them)."""
        self.settle(listing)
        files = Settled(self.sources, self.settled_later)
        if previous is not None:
            others = getattr(previous.files, "others", previous.files)
            for path, entry in others.items():
                gone = listing is not None and path not in listing
                if path not in self.sources and not gone:
                    files.others[path] = entry
        state = {"django": django.get_version(), "collectstatic_plus": __version__}
        if postprocess is not None:
            state["postprocess"] = postprocess
        return Record(self.backend.fingerprint(), files, manifests, state)

    def settle(self, listing: Listing | None) -> None:
        """Make each source the destination holds carry its next record entry.

        A kept file is as the listing showed it; a written one as the backend
        saw it saved, else as one more listing shows it (or, if the backend
        told it after the save, as it tells when the record is written).
        """
        sources = self.sources.values()
        if listing is not None:
            unseen = [source for source in sources if seen_unknown(source)]
            if unseen:
                now = self.retry("Listing the destination", self.backend.listing)
                now = now or {}
                for source in unseen:
                    assert isinstance(source.content, Entry)
                    source.content.seen = now.get(source.prefixed_path)
        for source in sources:
            if source.state is State.KEPT:
                remote = source.listed if listing is not None else None
                source.content = self.settled(source, remote)
            elif source.state is State.WRITTEN and isinstance(source.content, Entry):
                source.content = self.settled(source, source.content.seen)

    def settled_later(self, source: Source) -> Entry:
        """The next record's entry for a written file that holds only its
        content (see ``Copier.landed``): made as the record is written."""
        assert source.content is not None
        return self.settled(
            source, self.backend.seen_again(source.prefixed_path, source.content)
        )

    def settled(self, source: Source, remote: Remote | None) -> Entry:
        """The next record's entry for a source the destination holds.

        A written file's content is an Entry this run made, completed in
        place; any other is left as it is (the previous record's entries are
        compared with the next one's).
        """
        old, content, token = source.recorded, source.content, source.token
        assert content is not None
        if old is not None and remote is not None and saw_same(old, remote):
            remote = old.seen  # the same object: keep what the record saw
            same = (old.md5, old.size, old.source) == (content.md5, content.size, token)
            if same:
                return old  # unchanged: one entry for both records
        if source.state is State.WRITTEN and isinstance(content, Entry):
            content.seen, content.source = remote, token
            return content
        return Entry(content.md5, content.size, remote, token)


def seen_unknown(source: Source) -> bool:
    """Whether this run wrote the file and the backend could not say what
    the destination then held (see ``Copier.landed``)."""
    content = source.content
    written = source.state is State.WRITTEN
    return written and isinstance(content, Entry) and content.seen is None
