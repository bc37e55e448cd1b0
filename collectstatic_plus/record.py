"""The sync record: what this package last wrote to a destination.

A small JSON document kept in the destination storage itself. It maps every
collected path to the MD5 and size of the source content that was written
there, plus what the destination reported for it afterwards (an S3 ETag, a
local mtime), so a later listing can tell whether the file changed out of
band. It also keeps the paths named by the last few manifests, so pruning
never removes files that cached pages may still reference.

The record lives in a place others can write to, so it is untrusted input:
it is size-limited and validated field by field, and any doubt makes it
"unknown" (every file is then checked), never "unchanged".
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import File

from .backends import Backend, Readable, Remote, etag_text, etag_value
from .retry import classify
from .sources import Digest, hex_md5

FORMAT = "collectstatic-plus-record"
#: 2: ``files`` became rows (lists) instead of objects: faster to read, smaller.
VERSION = 2
#: Records larger than this are not read (about 300,000 files).
MAX_BYTES = 64 * 1024 * 1024
MD5 = re.compile(r"[0-9a-f]{32}")
#: Source tokens are 60-bit hashes. Earlier builds wrote strings like these,
#: then 64-bit hashes (still accepted): neither matches a token any more, so
#: those files are read again.
OLD_TOKEN = re.compile(r"[0-9a-f][0-9a-f-]{0,99}")
TOKEN_LIMIT = 1 << 64
MAX_ETAG = 100
#: A record larger than this is written to a temporary file before it is
#: saved, not held in memory (50,000 files make about 7 MB).
SPOOL_BYTES = 1024 * 1024
#: The record is written with one row of ``files`` per line, between these.
FILES_OPEN = b',"files":['
FILES_CLOSE = b'],"manifests":'
#: Bytes read from the record at a time.
CHUNK = 64 * 1024
#: Rows parsed at a time.
BATCH = 1000


class RecordError(ValueError):
    """The record exists but cannot be trusted; the message says why."""


@dataclass(slots=True)  # not frozen: one per file, and frozen inits are slow
class Entry(Digest):
    """One collected file: the source content written, and what then landed.

    It is the Digest of that content, so an unchanged file needs no other.
    """

    #: What a listing of the destination showed right after the write.
    seen: Remote | None = None
    #: The source's stat token (see ``sources.stat_token``) for this content.
    source: int | None = None

    def row(self, path: str) -> list[Any]:
        """The entry as a row of the record's ``files`` (see :data:`COLUMNS`)."""
        seen, md5 = self.seen, hex_md5(self.md5)
        if seen is None:
            return [path, md5, self.size, self.source, None, None, None]
        etag = etag_text(seen.etag)
        return [path, md5, self.size, self.source, seen.size, etag, seen.mtime_ns]


#: What each row of ``files`` holds; the seen_* are null when nothing was seen.
COLUMNS = ("path", "md5", "size", "source", "seen_size", "seen_etag", "seen_mtime_ns")
#: Where a record being read puts its entries (a dict when None).
Files = MutableMapping[str, Entry] | None


@dataclass
class Record:
    """Collected paths, and the manifests' paths of the last runs, newest first."""

    fingerprint: str
    files: MutableMapping[str, Entry] = field(default_factory=dict)
    manifests: list[list[str]] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)

    def same_content(self, other: Record | None, tokens: bool = False) -> bool:
        """Equal but for source tokens (compared too if ``tokens``)."""
        if other is None or (self.fingerprint, self.manifests, self.state) != (
            other.fingerprint,
            other.manifests,
            other.state,
        ):
            return False
        theirs, count = other.files, 0
        for path, entry in self.files.items():  # one pass: maps may be views
            old = theirs.get(path)
            if old is None:
                return False
            if entry is not old and not (
                entry.md5 == old.md5
                and entry.size == old.size
                and entry.seen == old.seen
                and (not tokens or entry.source == old.source)
            ):
                return False
            count += 1
        return count == len(theirs)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    def write(self, out: BinaryIO) -> None:
        """Write compact JSON, one file's row at a time, one row per line.

        Building the whole document first would hold every entry twice more,
        as lists and as one string: tens of MB for 50,000 files. The line
        layout lets :func:`load` read it back a row at a time too.
        """
        encode = json.JSONEncoder(separators=(",", ":")).encode
        head = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "state": dict(sorted(self.state.items())),
            "columns": COLUMNS,
        }
        out.write(encode(head)[:-1].encode() + FILES_OPEN + b"\n")
        for number, path in enumerate(sorted(self.files)):
            row = encode(self.files[path].row(path))
            out.write((b",\n" if number else b"") + row.encode())
        manifests = [sorted(paths) for paths in self.manifests]
        out.write(b"\n" + FILES_CLOSE + encode(manifests).encode() + b"}\n")

    @classmethod
    def from_bytes(cls, data: bytes, fingerprint: str, files: Files = None) -> Record:
        """Parse and validate; raise RecordError for anything untrustworthy.

        The entries go into ``files`` if given (see ``onsources.Recorded``).
        """
        return cls.from_document(_parsed(_decoded(data)), fingerprint, files)

    @classmethod
    def from_document(
        cls, document: object, fingerprint: str, files: Files = None
    ) -> Record:
        """Validate the parsed JSON; raise RecordError if untrustworthy."""
        record = cls.from_head(document, fingerprint, files)
        assert isinstance(document, dict)
        _files(document.pop("files", None), record.files)
        record.manifests = _manifests(document.get("manifests", []))
        return record

    @classmethod
    def from_head(
        cls, document: object, fingerprint: str, files: Files = None
    ) -> Record:
        """A record from the document's head, validated; its entries are to go
        into ``files`` (a new dict when None)."""
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise RecordError("not a collectstatic-plus record")
        if document.get("version") != VERSION:
            raise RecordError(f"unknown version {document.get('version')!r}")
        if document.get("fingerprint") != fingerprint:
            raise RecordError(
                "written for another destination (storage class, bucket or "
                "location differ)"
            )
        if document.get("columns") != list(COLUMNS):
            raise RecordError(f"unknown columns {document.get('columns')!r}")
        record = cls(fingerprint=fingerprint, state=_state(document.get("state", {})))
        if files is not None:
            record.files = files
        return record


def _decoded(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise RecordError(f"larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"not valid JSON ({error})") from None


def _parsed(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"not valid JSON ({error})") from None


#: A relative path of non-empty parts, none "." or "..", without backslashes
#: or NUL bytes.
SAFE_PATH = re.compile(r"(?!/)(?:(?!\.\.?(?:/|\Z))[^/\\\x00]+/)*(?!\.\.?\Z)[^/\\\x00]+")


def is_safe_path(path: object) -> bool:
    """A relative, normalised, forward-slash path inside the destination."""
    return (
        isinstance(path, str)
        and len(path) <= 1024
        and SAFE_PATH.fullmatch(path) is not None
    )


def _files(rows: object, files: MutableMapping[str, Entry]) -> None:
    """Add the rows' entries, each row dropped as soon as it is read (the
    parsed rows and the entries are not held in full at the same time)."""
    if type(rows) is not list:
        raise RecordError("'files' is not a list")
    rows.reverse()
    while rows:
        _add(files, rows.pop())


def _add(files: MutableMapping[str, Entry], row: object) -> None:
    """Validate one row of ``files`` and add its entry."""
    if type(row) is not list or len(row) != len(COLUMNS):
        raise RecordError(f"a 'files' row is not a list of {len(COLUMNS)}")
    path = row[0]
    if not is_safe_path(path):
        raise RecordError(f"unsafe path {path!r}")
    if path in files:
        raise RecordError(f"{path!r} is listed twice")
    files[path] = _entry(*row)


def _entry(
    path: str,
    md5: object,
    size: object,
    source: object,
    seen_size: object,
    etag: object,
    mtime_ns: object,
) -> Entry:
    if type(md5) is not str or not MD5.fullmatch(md5):
        raise RecordError(f"entry for {path!r} has a bad md5")
    value = int(md5, 16)
    if not _is_count(size):
        raise RecordError(f"entry for {path!r} has a bad size")
    if type(source) is str and OLD_TOKEN.fullmatch(source):
        source = None
    elif source is not None and not _is_token(source):
        raise RecordError(f"entry for {path!r} has a bad source token")
    if seen_size is None:
        if etag is not None or mtime_ns is not None:
            raise RecordError(f"entry for {path!r} has a bad seen size")
        return Entry(value, size, None, source)  # type: ignore[arg-type]
    if not _is_count(seen_size):
        raise RecordError(f"entry for {path!r} has a bad seen size")
    if etag is not None and (type(etag) is not str or len(etag) > MAX_ETAG):
        raise RecordError(f"entry for {path!r} has a bad etag")
    if mtime_ns is not None and not _is_count(mtime_ns):
        raise RecordError(f"entry for {path!r} has a bad mtime_ns")
    if seen_size == size:
        seen_size = size  # one int object for both
    held = etag_value(etag)
    if held == value:
        held = value  # one int for both
    seen = Remote(seen_size, held, mtime_ns)  # type: ignore[arg-type]
    return Entry(value, size, seen, source)  # type: ignore[arg-type]


def _manifests(value: object) -> list[list[str]]:
    if not isinstance(value, list) or not all(isinstance(m, list) for m in value):
        raise RecordError("'manifests' is not a list of lists")
    for paths in value:
        for path in paths:
            if not is_safe_path(path):
                raise RecordError(f"unsafe manifest path {path!r}")
    return [list(paths) for paths in value]


def _state(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RecordError("'state' is not an object of strings")
    return dict(value)


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_token(value: object) -> bool:
    return type(value) is int and 0 <= value < TOKEN_LIMIT


def load(
    backend: Backend, name: str, fingerprint: str, files: Files = None
) -> Record | None:
    """The record in the destination, None if there is none.

    Read a chunk at a time and parsed a row at a time: neither the document
    nor its parsed rows are ever held whole (for 50,000 files each is several
    MB). The entries go into ``files`` if given. Raises RecordError when one
    exists but cannot be trusted (``files`` may then hold some entries).
    """
    try:
        with backend.stream(name) as stream:
            return None if stream is None else read(stream, fingerprint, files)
    except (RecordError, ImproperlyConfigured):
        raise
    except Exception as error:
        if classify(error) in ("transient", "throttled", "permanent"):
            raise  # the caller's retry (or fail-fast) handles these
        raise RecordError(f"cannot be read ({type(error).__name__}: {error})") from None


def read(stream: Readable, fingerprint: str, files: Files = None) -> Record:
    """Parse a record a line at a time, as :meth:`Record.write` lays it out.

    Any other layout of the same JSON (an older writer's single line) is
    parsed whole instead.
    """
    lines = _lines(stream)
    first = next(lines, b"")
    if not first.endswith(FILES_OPEN):
        return Record.from_bytes(b"\n".join([first, *lines]), fingerprint, files)
    head = _parsed_line(first[: -len(FILES_OPEN)] + b"}")
    record = Record.from_head(head, fingerprint, files)
    batch: list[bytes] = []
    number = 2  # the line of batch[0]
    for line in lines:
        if not line.startswith(FILES_CLOSE):
            batch.append(line)
            if len(batch) == BATCH:
                _add_rows(record.files, batch, number)
                number += len(batch)
                batch.clear()
            continue
        _add_rows(record.files, batch, number)
        number += len(batch)
        tail = _parsed_line(b"{" + line[2:])  # '{"manifests":[...]}'
        if not isinstance(tail, dict) or next(lines, None) is not None:
            raise RecordError(f"line {number}: unexpected data after the files")
        try:
            record.manifests = _manifests(tail.get("manifests", []))
        except RecordError as error:
            raise RecordError(f"line {number}: {error}") from None
        return record
    raise RecordError("cut short")


def _add_rows(
    files: MutableMapping[str, Entry], lines: list[bytes], first: int
) -> None:
    """Add the rows on ``lines`` (numbered from ``first``), one per line.

    They are parsed together (one ``json.loads`` per batch is several times
    faster than one per row); if that fails, line by line, for the message.
    """
    try:
        text = (b"[" + b"".join(lines).removesuffix(b",") + b"]").decode("utf-8")
        rows = json.loads(text)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError
        rows = None
    if type(rows) is not list or len(rows) != len(lines):
        rows = None
    for offset, line in enumerate(lines):
        try:
            if rows is None:
                _add(files, _parsed_line(line.removesuffix(b",")))
            else:
                _add(files, rows[offset])
        except RecordError as error:
            raise RecordError(f"line {first + offset}: {error}") from None


def _lines(stream: Readable) -> Iterator[bytes]:
    """The stream's lines without their newlines, read a chunk at a time."""
    total = 0
    pending: list[bytes] = []
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > MAX_BYTES:
            raise RecordError(f"larger than {MAX_BYTES} bytes")
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            line = b"".join(pending)
            pending.clear()
            yield line
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending)


def _parsed_line(line: bytes) -> object:
    return _parsed(_decoded(line))


def save(backend: Backend, name: str, record: Record) -> None:
    """Write the record through the storage, replacing any previous one.

    On a local storage it is written beside the target and renamed over it,
    so a reader sees the old record or the new one, never half of one.
    Elsewhere a single upload replaces the object; a storage that would pick
    another name for an existing file has the old one deleted first.
    """
    import tempfile  # here: 4 ms to import, and most re-runs write no record

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        record.write(spool)  # type: ignore[arg-type]
        content = File(spool, name=name)
        content.size = spool.tell()
        spool.seek(0)
        _save(backend, name, content)


def _save(backend: Backend, name: str, content: File) -> None:  # type: ignore[type-arg]
    storage = backend.storage
    if backend.local:
        temporary = f"{name}.{os.getpid()}.tmp"
        written = storage.save(temporary, content)
        os.replace(storage.path(written), storage.path(name))
        return
    if not backend.overwrites_in_place and storage.exists(name):
        storage.delete(name)
    written = storage.save(name, content)
    if written != name:
        storage.delete(written)
        raise RecordError(f"the storage saved it as {written!r} instead of {name!r}")
