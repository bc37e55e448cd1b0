"""The backend contract: what a run may ask of a destination storage.

:class:`Backend` works with any ``Storage`` through its public API. A
subclass for a storage we know adds read-only fast paths (a listing of the
destination in a few requests, streamed reads), tunes the storage's client
for threads, counts its requests, and says which of its errors are worth
retrying. Every write of a collected or post-processed file still goes
through the storage's own ``save`` and ``delete``, except batched deletes,
which use the storage's own client, bucket and location; the conditional
writes of the lease and the sync record (``create``, ``replace``,
``remove``) are the backend's own.

To add a backend, subclass :class:`Backend` in a module of this package,
set ``BACKEND`` to it and add the module to ``backends.KNOWN`` (see
``docs/design.md``).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, NamedTuple, Protocol

from django.core.exceptions import SuspiciousOperation
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from ..digest import Digest, digest_file
from ..retry import first_few, first_line

#: An MD5 as storage services write it in an ETag or a checksum field.
MD5 = re.compile(r"[0-9a-f]{32}")

#: How a failed storage call is treated (see :meth:`Backend.classify`).
UNREACHABLE = "unreachable"  # nothing answered: retry, until too many (retry.py)
TRANSIENT = "transient"  # try again after a backoff
THROTTLED = "throttled"  # the service asks for fewer calls: back off harder
PERMANENT = "permanent"  # every call will fail the same way: stop the run
OTHER = "other"  # this file's own problem: report it, go on with the others

#: Errors of the standard library that mean nothing answered.
UNREACHABLE_ERRORS = (
    ConnectionRefusedError,
    ConnectionResetError,
    ConnectionAbortedError,
    socket.gaierror,
    ssl.SSLError,
    TimeoutError,
)

#: HTTP statuses worth another attempt.
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})


class Remote(NamedTuple):
    """What a listing says the destination holds at one path."""

    size: int
    #: An ETag, Content-MD5 or generation: what changes with the content.
    etag: str | None = None
    mtime_ns: int | None = None
    is_link: bool = False

    @property
    def md5(self) -> str | None:
        """The content's MD5 when the ETag is one (a single-part upload)."""
        etag = self.etag
        return etag if etag is not None and MD5.fullmatch(etag) else None


#: Files named in a DeleteFailed message (all are counted).
NAMED_FAILURES = 10


class DeleteFailed(OSError):
    """Files a delete left in place, each with its reason, after every other
    file was tried; the first failure's HTTP status and service error code
    (for :meth:`Backend.classify`)."""

    def __init__(
        self,
        failures: list[tuple[str, str]],
        status_code: int | None = None,
        error_code: str | None = None,
    ) -> None:
        self.failures = failures
        self.status_code = status_code
        self.error_code = error_code
        named = [f"{name!r} ({why})" for name, why in failures]
        self.named = first_few(named, NAMED_FAILURES)
        super().__init__(f"could not delete {len(failures)} file(s): {self.named}")


#: What a conditional write takes: bytes, or a file to read them from.
Payload = bytes | IO[bytes]


def as_bytes(data: Payload) -> bytes:
    return data if isinstance(data, bytes) else data.read()


def content_version(data: bytes) -> str:
    """A version for storages that keep none: the content's MD5 (what an S3
    ETag is for a single upload)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def unwrap(storage: Any) -> Storage:
    """The object behind ``staticfiles_storage``'s LazyObject."""
    wrapped = storage.__dict__.get("_wrapped")
    return wrapped if isinstance(wrapped, Storage) else storage


#: What a listing returns: every file under the storage's location.
Listing = dict[str, Remote]


class Readable(Protocol):
    """A file opened for reading in binary mode."""

    def read(self, size: int = -1, /) -> bytes: ...


class Backend:
    """Any storage, through the Storage API only."""

    #: Whether reading a destination file is as cheap as a local read.
    local = False
    #: Whether the service takes only UTF-8 names (not a file name's
    #: undecodable bytes): a dry run then fails on one as the upload would.
    utf8_names = False
    #: Storage attributes that identify where it writes (see fingerprint).
    where = ("location", "bucket_name", "endpoint_url", "azure_container")
    #: Exception class names (anywhere in an error's MRO) and service error
    #: codes that :meth:`classify` knows; subclasses add their SDK's.
    transient_names: frozenset[str] = frozenset()
    #: Those that mean the destination could not be reached at all.
    unreachable_names: frozenset[str] = frozenset()
    #: Whether the SDK retries a failed connection for long itself (one
    #: unreachable error then stops the run: see retry.BREAK_AFTER).
    sdk_retries_connections = False
    permanent_names: frozenset[str] = frozenset()
    transient_codes: frozenset[str] = frozenset()
    throttling_codes: frozenset[str] = frozenset()
    permanent_codes: frozenset[str] = frozenset()
    #: What a permanent error's line asks the user to check.
    check_hint = "credentials, bucket and permissions"

    @staticmethod
    def handles(storage: Storage) -> bool:
        return True

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def storage_class(self) -> type[Any]:
        return self.storage.__class__  # unwraps staticfiles_storage's LazyObject

    def inside(self, other: Backend, name: str = "") -> str | None:
        """If ``other`` writes inside this storage (a file ``name`` in it, if
        given), the folder its names are in among this one's ("" for the same
        place); else None (or unknown: only the backends we know say all of
        where they write)."""
        if type(self) is Backend or type(other) is not type(self):
            return None
        mine, theirs = self.place(self.storage), self.place(other.storage)
        root = self.root(mine.pop("location"))
        location = posixpath.join(
            str(theirs.pop("location") or ""), posixpath.dirname(name)
        )
        under = other.root(location)
        if mine != theirs or not (not root or f"{under}/".startswith(f"{root}/")):
            return None
        return f"{under[len(root) :].strip('/')}/".lstrip("/")

    def place(self, storage: Storage) -> dict[str, object]:
        """Where ``storage`` writes, for :meth:`inside`; Azure's account and
        endpoint are its service client's URL (built without a request)."""
        place = {a: getattr(storage, a, None) for a in self.where}
        place["url"] = getattr(getattr(storage, "service_client", None), "url", None)
        return place

    @staticmethod
    def root(location: object) -> str:
        """A ``location`` as :meth:`inside` compares it."""
        return "" if location is None else str(location).strip("/")

    def fingerprint(self) -> str:
        """Identifies the destination: class and where it writes."""
        cls = self.storage_class
        parts: dict[str, str] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
        for attr in self.where:
            value = getattr(self.storage, attr, None)
            if value is not None:  # ("static/" writes where "static" does)
                parts[attr] = str(value).rstrip("/") or str(value)
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    # Reading ----------------------------------------------------------------

    def listing(self) -> Listing | None:
        """Every file under the storage's location, or None if we cannot list."""
        return None

    def listed_name(self, name: str) -> str:
        """The name a listing shows for a file saved as ``name``."""
        return name

    def check_name(self, name: str) -> None:
        """Raise as an upload would for a name the service refuses (not
        UTF-8, say), so that a dry run fails where the upload would."""
        if self.utf8_names:
            name.encode()

    def read(self, name: str) -> bytes | None:
        """The file's bytes, None if it does not exist or cannot be read."""
        if not callable(getattr(self.storage, "_open", None)):
            return None
        try:
            with self.storage.open(name, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, NotImplementedError):
            return None
        return data.encode() if isinstance(data, str) else data

    @contextmanager
    def stream(self, name: str) -> Iterator[Readable | None]:
        """The file to read a chunk at a time, None if it does not exist.

        Here it is read whole first (:meth:`read`); backends that can stream do.
        """
        data = self.read(name)
        yield None if data is None else io.BytesIO(data)

    def digest(self, name: str) -> Digest | None:
        """MD5 and size of the destination file, None if it is not there."""
        if not callable(getattr(self.storage, "_open", None)):
            return None
        try:
            return digest_file(self.storage, name)
        except (FileNotFoundError, NotImplementedError):
            return None

    # Writing ----------------------------------------------------------------

    @property
    def overwrites_in_place(self) -> bool:
        """Whether ``save`` replaces an existing file instead of renaming."""
        return bool(getattr(self.storage, "file_overwrite", False))

    def delete_many(self, names: Iterable[str]) -> None:
        """Each name through the storage's ``delete``. A file's own failure
        does not stop the others (they end in one DeleteFailed); any other
        is raised at once, for the caller's retry to start over."""
        failed: list[tuple[str, str]] = []
        for name in names:
            try:
                self.storage.delete(name)
            except Exception as error:
                if self.classify(error) != OTHER:
                    raise
                failed.append((name, first_line(error)))
        if failed:
            raise DeleteFailed(failed)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Around the saves whose :meth:`saved` is asked (the copies, the
        manifest)."""
        yield

    def saved(self, name: str, content: Digest) -> Remote | None:
        """What a listing would now show at ``name``, right after this run
        saved ``content`` there, if known without a request; None if not
        (the file is then listed once more before the record is written)."""
        return None

    # Objects of our own, written on conditions (the lease) --------------------

    #: Whether the service checks the conditions below itself; if not, they
    #: are checked, then the object written: a best effort (two runs that
    #: check at the same moment can both succeed).
    conditional = False

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        """The object's bytes and version, None if there is none."""
        data = self.read(name)
        return None if data is None else (data, content_version(data))

    def create(self, name: str, data: Payload) -> str | None:
        """Write ``data`` at ``name`` if nothing is there; its version, or
        None if something is."""
        data = as_bytes(data)
        if self.storage.exists(name):
            return None
        saved = self.storage.save(name, ContentFile(data))
        if saved != name:  # something was, after all: the storage renamed ours
            self.storage.delete(saved)
            return None
        return content_version(data)

    def replace(self, name: str, data: Payload, version: str) -> str | None:
        """Write ``data`` over ``name`` if it is still at ``version``; the new
        version, or None if it is not."""
        current = self.fetch(name)
        if current is None or current[1] != version:
            return None
        self.storage.delete(name)
        return self.create(name, data)

    def remove(self, name: str, version: str) -> bool:
        """Delete ``name`` if it is still at ``version``."""
        current = self.fetch(name)
        if current is None or current[1] != version:
            return False
        self.storage.delete(name)
        return True

    # Running ----------------------------------------------------------------

    def ready(self) -> None:
        """Build the storage's client now (a bad endpoint fails here)."""

    def check_location(self, name_for: Callable[[str], object]) -> None:
        """A location the storage refuses ("a/../../b"), said with its value:
        ``name_for`` is how the storage names a file."""
        try:
            name_for("x")
        except SuspiciousOperation:
            location = getattr(self.storage, "location", "")
            raise SuspiciousOperation(
                f"the storage refuses its location {location!r}"
            ) from None

    @contextmanager
    def prepared_for_threads(self, workers: int) -> Iterator[None]:
        """Make the storage's client ready for ``workers`` threads."""
        yield

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Call ``count(kind)`` for each request the storage's client makes."""
        yield

    @property
    def endpoint(self) -> str:
        """Where the destination is, for messages."""
        for attr in ("endpoint_url", "account_url", "location"):
            value = getattr(self.storage, attr, None)
            if value:
                return str(value)
        return type(self.storage).__name__

    def classify(self, error: BaseException) -> str:
        """Whether a failed call is UNREACHABLE, TRANSIENT, THROTTLED,
        PERMANENT or OTHER."""
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & self.permanent_names:
            return PERMANENT
        if names & self.unreachable_names or isinstance(error, UNREACHABLE_ERRORS):
            return UNREACHABLE
        status, code = self.describe(error)
        if code in self.permanent_codes or status in (401, 403):
            return PERMANENT
        if code in self.throttling_codes or status in (429, 503):
            return THROTTLED
        if code in self.transient_codes or status in TRANSIENT_STATUS:
            return TRANSIENT
        if names & self.transient_names:
            return TRANSIENT
        if isinstance(error, ConnectionError | TimeoutError):
            return TRANSIENT
        return OTHER

    def describe(self, error: BaseException) -> tuple[int | None, str | None]:
        """The HTTP status and service error code of a failed call, if any."""
        status = getattr(error, "status_code", None)
        code = getattr(error, "error_code", None)
        code = getattr(code, "value", code)  # Azure's StorageErrorCode enum
        return (status if isinstance(status, int) else None), (
            str(code) if code else None
        )
