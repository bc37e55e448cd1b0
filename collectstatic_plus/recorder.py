"""The record step: read the previous sync record, make and write the next one.

The format is :mod:`.record`'s; this module moves records in and out of the
destination storage, streamed both ways, and decides what the next record
says: every collected file the destination now holds (kept or written), with
what a listing showed right after, plus the previous record's other paths the
destination still has (``--delete`` may want them). A record that would say
nothing new is not written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zlib
from collections.abc import Callable, Collection, Mapping
from operator import attrgetter
from typing import IO

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import File
from django.core.management.base import CommandError

from . import __version__
from .backends import backend_for
from .backends.base import Backend, Listing, Remote, content_version
from .digest import digest_stream
from .options import RunOptions
from .paths import is_safe_path
from .plan import saw_same
from .record import MAX_BYTES, Entry, Key, Processed, Record, RecordError, read
from .retry import PermanentError, Retry, Unreachable, first_line
from .sources import Source, source_folder_of

#: A record larger than this is spooled to a temporary file while it is
#: saved, not held in memory (50,000 files make about 7 MB).
SPOOL_BYTES = 256 * 1024
#: What the record's state says of the last complete post-process.
POSTPROCESS = ("postprocess", "manifest")
GZIP_MAGIC = b"\x1f\x8b"


class Recorder:
    """Reads and writes one destination's sync record.

    The record is kept in ``backend``'s storage: the destination's own, or the
    one ``RECORD_STORAGE`` names (a private place, when the destination is
    served publicly); it always describes ``destination``.
    """

    def __init__(
        self,
        backend: Backend,
        retry: Retry,
        name: str,
        warn: Callable[[str], None],
        destination: Backend | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.name = name
        self.warn = warn
        self.destination = destination or backend
        #: Called before the record is written: raises CommandError if this
        #: run may not write it (it lost its lease, see lease.py).
        self.fence: Callable[[], None] | None = None
        #: Where writes can be conditional: the version of the record this run
        #: last read or wrote (None: there was none). It is replaced only if
        #: still so.
        self.version: str | None = None
        self.read_version = False

    def forget(self) -> None:
        """Delete the record (``--clear``: it no longer describes anything)."""
        storage = self.backend.storage
        self.retry("Deleting the sync record", lambda: storage.delete(self.name))
        self.version, self.read_version = None, True

    def load(self, key: Key = str) -> Record | None:
        """The previous record, its source paths as ``key`` gives them; None
        if it is missing, or (with a warning) cannot be trusted. A permanent
        storage error is raised."""
        fingerprint = self.destination.fingerprint()

        def load() -> Record | None:
            if self.backend.local:  # its version first (a stat: no read)
                self.version, self.read_version = self.current_version(), True
            elif self.backend.conditional:  # read whole, with its version
                found = self.backend.fetch(self.name)
                self.version = None if found is None else found[1]
                self.read_version = True
                if found is None:
                    return None
                data = found[0]
                if data[:2] == GZIP_MAGIC:  # as a gzipping storage saved it
                    data = gunzipped(data)
                return read(io.BytesIO(data), fingerprint, key)
            with self.backend.stream(self.name) as stream:
                return None if stream is None else read(stream, fingerprint, key)

        try:
            return self.retry("Reading the sync record", load)
        except RecordError as error:
            self.warn(f"Ignoring the sync record '{self.name}': {error}.")
        except (PermanentError, ImproperlyConfigured):
            raise
        except Exception as error:  # still failing after retries: know nothing
            if self.backend.classify(error) == "unreachable":
                return None  # the listing says so next, in one line
            reason = f"cannot be read ({first_line(error)})"
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
        postprocess: Mapping[str, str],
        processed: dict[str, Processed],
        consumed: Collection[str] = (),
    ) -> Record:
        """This run's record.

        ``written`` maps each file this run wrote to what the backend saw
        right after (None: not known, so the destination is listed once more);
        ``kept`` holds the files found up to date; ``consumed`` the originals
        post-processing removed (recorded as written, with nothing seen);
        ``processed`` and ``postprocess`` say what the last complete
        post-process did, with which settings ("postprocess") and the
        manifest it published ("manifest": Staging.published, ETag or MD5).
        """
        old = previous.files if previous is not None else {}
        if listing is not None and None in written.values():
            now = self.listing_again()
            named = self.backend.listed_name  # (a storage may rename a file)
            written = {p: seen or now.get(named(p)) for p, seen in written.items()}
        files: dict[str, Entry] = {}
        for path, source in sources.items():
            if source.digest is None:
                continue
            was = old.get(path)
            if was is None and not is_safe_path(path):
                continue  # its reader refuses it ("a\\b"): the listing decides
            if path in consumed:
                seen = None
            elif path in written:
                seen = written[path]
            elif path in kept:
                seen = None if listing is None else listing.get(path)
                if was is not None and seen is not None and saw_same(was, seen):
                    seen = was.seen  # as the record saw it: no needless rewrite
            else:
                continue
            entry = Entry(source.digest, source.token, seen)
            # An unchanged file keeps the previous record's entry: one per file.
            files[path] = was if was is not None and was == entry else entry
        for path, entry in old.items():
            if path not in sources and (listing is None or path in listing):
                files[path] = entry
        # Not the versions themselves: the record may be public (WhiteNoise
        # serves STATIC_ROOT), and versions help fingerprint a site.
        versions = f"{django.get_version()}\0{__version__}".encode()
        state = {"versions": hashlib.sha256(versions).hexdigest()[:16]}
        state.update((k, postprocess[k]) for k in POSTPROCESS if postprocess.get(k))
        fingerprint = self.destination.fingerprint()
        last = previous.processed if previous is not None else {}
        processed = {
            path: row
            for path, row in processed.items()
            if last.get(path) == row or _holds(path, row)  # (read: checked then)
        }
        return Record(fingerprint, files, manifests, state, processed)

    def listing_again(self) -> Listing:
        """What the destination shows now, for the files whose save did not
        say; if it cannot be listed, they are recorded as written, unseen
        (the next run compares them by content)."""
        try:
            return self.retry("Listing the destination", self.backend.listing) or {}
        except Unreachable:
            return {}  # the run stops because of it, and says so
        except Exception as error:
            self.warn(
                "Could not list the destination again for the sync record "
                f"({first_line(error)}); the files written are recorded as unseen."
            )
            return {}

    def save(self, new: Record, previous: Record | None, complete: bool) -> None:
        """Write ``new`` unless it says what ``previous`` does.

        A failure is a CommandError after a complete run, a warning after a
        partial one (the failure being reported then matters more).
        """
        # New source tokens alone (a fresh checkout) are worth a local write,
        # so later runs need not read every source again, but not an upload.
        if same_content(new, previous, tokens=self.backend.local):
            return
        if self.fence is not None:
            try:
                self.fence()
            except CommandError as error:
                if complete:
                    raise
                self.warn(str(error))
                return
        try:
            landed = self.retry("Writing the sync record", lambda: self._save(new))
        except RecordError as error:
            self.warn(f"Could not write the sync record: {error}.")
            return
        except Unreachable:
            if complete:
                raise
            return  # the run is stopping because of it, and says so
        except Exception as error:
            message = (
                f"Could not write the sync record: {type(error).__name__}: {error}"
            )
            if not complete:
                self.warn(message + ".")
                return
            raise CommandError(message) from error
        if not landed:
            message = (
                "The sync record was written by another run since this run read "
                "it; this run's record was not written. Run collectstatic again."
            )
            if complete:
                raise CommandError(message)
            self.warn(message)

    def landed_already(self, spool: IO[bytes]) -> str | None:
        """The record's version if it is already this very record: an
        earlier attempt of this write landed and its answer was lost."""
        found = self.backend.fetch(self.name)
        spool.seek(0)
        if found is None or content_version(found[0]) != digest_stream(spool).md5:
            return None
        return found[1]

    def current_version(self) -> str | None:
        """The record's version at the destination now (None: none there);
        on local disk its inode, size and modification time."""
        if self.backend.local:
            try:
                stat = os.stat(self.backend.storage.path(self.name))
            except FileNotFoundError:
                return None
            return f"{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}"
        found = self.backend.fetch(self.name)
        return None if found is None else found[1]

    def _save(self, record: Record) -> bool:
        """Write the record, replacing the previous one if it is still the
        one this run read; whether it was.

        On local disk it is written beside the target through the storage,
        then renamed over it once the old one is found unchanged, so a
        reader sees the old record or the new one, never half of one. The
        other known backends upload it on the server's condition (the
        version read); any other storage gets one save through the storage
        (one that would pick another name for an existing file has the old
        one deleted first).
        """
        name, storage, backend = self.name, self.backend.storage, self.backend
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            record.write(spool)  # type: ignore[arg-type]
            content = File(spool, name=name)
            content.size = spool.tell()
            spool.seek(0)
            if backend.conditional and not self.read_version:
                self.version = self.current_version()  # unread: replace it
            if backend.conditional and not backend.local:
                if self.version is None:
                    version = backend.create(name, spool)
                else:
                    version = backend.replace(name, spool, self.version)
                version = version or self.landed_already(spool)
                self.version = version or self.version
                return version is not None
            if backend.local:
                temporary = f"{name}.{os.getpid()}.tmp"
                try:  # (the save too: an interrupt there leaves a part written)
                    temporary = storage.save(temporary, content)
                    if self.current_version() != self.version:
                        storage.delete(temporary)
                        return False
                    os.replace(storage.path(temporary), storage.path(name))
                except BaseException:  # Ctrl-C included: none left behind
                    with contextlib.suppress(OSError):
                        storage.delete(temporary)
                    raise
                self.version = self.current_version()
                return True
            if not self.backend.overwrites_in_place and storage.exists(name):
                storage.delete(name)
            written = storage.save(name, content)
        if written != name:
            storage.delete(written)
            raise RecordError(
                f"the storage saved it as {written!r} instead of {name!r}"
            )
        return True


def recorder_for(
    options: RunOptions, backend: Backend, retry: Retry, warn: Callable[[str], None]
) -> Recorder:
    """The sync record's reader and writer: in the destination, or in the
    storage RECORD_STORAGE names (with retries of its own)."""
    if options.record_storage is None:
        return Recorder(backend, retry, options.record_name, warn)
    from django.core.files.storage import storages

    try:
        keeper = backend_for(storages[options.record_storage])
    except Exception as error:  # a mistake in its OPTIONS, say: one line
        raise CommandError(
            f"The sync record's storage ({options.record_storage!r}, "
            f"RECORD_STORAGE) could not be set up: {first_line(error)}"
        ) from error
    folder = backend.inside(keeper, options.record_name)
    if folder is not None:  # served, and ours to delete? never
        there = folder + os.path.basename(options.record_name)
        raise CommandError(
            f"The sync record's storage ({options.record_storage!r}, "
            "RECORD_STORAGE) is inside the destination: the record would be "
            f"'{there}' there, served, and deleted by --clear and "
            "--delete-unowned. Give it a place outside."
        )
    found = keeper.local and source_folder_of(keeper.storage.path(options.record_name))
    if found:  # (it would be collected, and served)
        raise CommandError(
            f"The sync record's storage ({options.record_storage!r}, "
            f"RECORD_STORAGE) is inside the static files folder '{found}': "
            "the record would be collected. Give it a place outside."
        )
    retry = Retry(options.retries, options.retry_budget, errors=keeper)
    return Recorder(keeper, retry, options.record_name, warn, backend)


def same_content(new: Record, old: Record | None, tokens: bool = False) -> bool:
    """Whether ``new`` says what ``old`` does but for source tokens
    (compared too if ``tokens``)."""
    fields = attrgetter("fingerprint", "manifests", "state", "processed", "retired")
    if old is None or fields(new) != fields(old):
        return False
    if tokens:
        return new.files == old.files
    theirs = old.files
    return new.files.keys() == theirs.keys() and all(
        entry._replace(token=None) == theirs[path]._replace(token=None)
        for path, entry in new.files.items()
    )


def gunzipped(data: bytes) -> bytes:
    """A gzipped record's bytes, never more than a record may hold (a small
    upload must not unpack into gigabytes)."""
    inflated = zlib.decompressobj(wbits=31).decompress(data, MAX_BYTES + 1)
    if len(inflated) > MAX_BYTES:
        raise RecordError(f"larger than {MAX_BYTES} bytes")
    return inflated


def _holds(path: str, row: Processed) -> bool:
    """Whether a record can hold the row (its reader refuses "a\\b")."""
    names = (path, *row.refs, *row.outputs, *([row.hashed] if row.hashed else []))
    return all(map(is_safe_path, names))
