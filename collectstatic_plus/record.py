"""The sync record's format: what it holds, how it is written, parsed and checked.

The record says what this package last wrote to a destination: per collected
path, the MD5 and size written, the source's stat token for that content,
and what a listing showed right after (an ETag, or a local size and mtime),
so a later listing can tell a change made out of band. It keeps the paths
named by the last few manifests (pruning never removes what cached pages may
reference), those of older ones not deleted yet, and, after a complete
post-process, what it did per source (:class:`Processed`), for an
incremental one next time (:mod:`.incremental`).

The record lives where others can write, so it is untrusted input: it is
size-limited and validated field by field, and any doubt is a
:class:`RecordError` (the caller then trusts nothing), never "unchanged".
Reading and writing it in a storage is :mod:`.recorder`'s job; this module
only turns a record into bytes and back, a line at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, BinaryIO, NamedTuple

from .backends.base import Readable, Remote
from .digest import Digest
from .paths import is_safe_path

FORMAT = "collectstatic-plus-record"
#: 3 added ``processed``; a version 2 record is read as one without it.
VERSION = 3
VERSIONS = (2, 3)
#: What each row of ``files`` holds; the seen_* are null when nothing was seen.
COLUMNS = ("path", "md5", "size", "source", "seen_size", "seen_etag", "seen_mtime_ns")
#: What each row of ``processed`` holds (see :class:`Processed`).
PROCESSED_COLUMNS = ("path", "md5", "hashed", "refs", "outputs", "consumed")
#: Records larger than this are not read (about 300,000 files).
MAX_BYTES = 64 * 1024 * 1024
MAX_ETAG = 100
MD5 = re.compile(r"[0-9a-f]{32}")
#: Earlier builds wrote string tokens: they match nothing (files are read again).
OLD_TOKEN = re.compile(r"[0-9a-f][0-9a-f-]{0,99}")
TOKEN_LIMIT = 1 << 64
#: The rows of ``files`` are written one per line, between these.
FILES_OPEN = b',"files":['
PROCESSED_OPEN = b'],"processed":['
FILES_CLOSE = b'],"manifests":'
#: Bytes read at a time, and rows parsed at a time (one ``json.loads`` for a
#: thousand rows is several times faster than one per row).
CHUNK = 64 * 1024
BATCH = 1000


#: A path as the run holds it (the sources' own string); ``str``: the path.
Key = Callable[[str], str]


class RecordError(ValueError):
    """The record exists but cannot be trusted; the message says why."""


class Entry(NamedTuple):
    """One collected file: the content written, and what then landed."""

    #: The content written: its MD5 and size (a source whose stat token is
    #: unchanged takes this as its digest: plan.recorded_digest).
    digest: Digest
    #: The source's stat token when this content was read (see sources.py).
    token: int | None = None
    #: What a listing of the destination showed right after the write.
    seen: Remote | None = None

    @property
    def md5(self) -> str:
        return self.digest.md5

    @property
    def size(self) -> int:
        return self.digest.size

    def row(self, path: str) -> list[Any]:
        """The entry as a row of the record's ``files`` (see :data:`COLUMNS`)."""
        seen = (None, None, None) if self.seen is None else self.seen[:3]
        return [path, self.md5, self.size, self.token, *seen]


class Processed(NamedTuple):
    """What the last complete post-process did with one source."""

    md5: str
    #: Its hashed name (None for a storage that does not hash names).
    hashed: str | None = None
    #: The sources its rewritten content refers to.
    refs: tuple[str, ...] = ()
    #: What the post-processor wrote for it (hashed copy, compressed files).
    outputs: tuple[str, ...] = ()
    #: Whether it removed the original (WHITENOISE_KEEP_ONLY_HASHED_FILES).
    consumed: bool = False

    def row(self, path: str) -> list[Any]:
        return [path, *self]  # (tuples are written as JSON arrays)


@dataclass
class Record:
    """Collected paths, and the manifests' paths of the last runs, newest first."""

    fingerprint: str
    files: dict[str, Entry] = field(default_factory=dict)
    manifests: list[list[str]] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    #: Per source, the last complete post-process (empty if none is known).
    processed: dict[str, Processed] = field(default_factory=dict)
    #: What post-processing wrote that nothing else here names: still ours.
    retired: list[str] = field(default_factory=list)

    def without(self, paths: Collection[str]) -> Record:
        """This record, less ``paths`` (deleted since it was written)."""
        files = {path: e for path, e in self.files.items() if path not in paths}
        retired = [path for path in self.retired if path not in paths]
        return replace(self, files=files, retired=retired)

    def write(self, out: BinaryIO) -> None:
        """Write compact JSON with one row of ``files`` (and of ``processed``)
        per line, so that :func:`read` can parse it a row at a time (and never
        whole)."""
        encoder = json.JSONEncoder(separators=(",", ":"))
        encode = encoder.encode
        head = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "state": dict(sorted(self.state.items())),
            "columns": COLUMNS,
            "processed_columns": PROCESSED_COLUMNS,
            "retired": sorted(self.retired),
        }
        out.write(encode(head)[:-1].encode() + FILES_OPEN + b"\n")
        _write_rows(out, self.files, encode)
        out.write(PROCESSED_OPEN + b"\n")
        _write_rows(out, self.processed, encode)
        out.write(FILES_CLOSE)
        # A name at a time: never the manifests' whole text in memory.
        for chunk in encoder.iterencode([sorted(paths) for paths in self.manifests]):
            out.write(chunk.encode())
        out.write(b"}\n")


def _write_rows(
    out: BinaryIO,
    section: Mapping[str, Entry | Processed],
    encode: Callable[[Any], str],
) -> None:
    """One row per line, each but the last followed by a comma."""
    paths = sorted(section)
    last = len(paths) - 1
    for number, path in enumerate(paths):
        row = encode(section[path].row(path)).encode()
        out.write(row + (b",\n" if number < last else b"\n"))


def read(stream: Readable, fingerprint: str, key: Key = str) -> Record:
    """Parse a record a line at a time, as :meth:`Record.write` lays it out,
    each source path as ``key`` gives it (the string the run already holds).

    Any other layout of the same JSON (all on one line) is parsed whole.
    Raises RecordError for anything untrustworthy.
    """
    lines = _lines(stream)
    first = next(lines, b"")
    if not first.endswith(FILES_OPEN):
        return parse(b"\n".join([first, *lines]), fingerprint, key)
    record = _head(_parsed(first[: -len(FILES_OPEN)] + b"}"), fingerprint)
    section, add = record.files, partial(_add, key=key)
    batch: list[bytes] = []
    number = 2  # the line of batch[0]
    for line in lines:
        if not line.startswith(b"]"):
            batch.append(line)
            if len(batch) == BATCH:
                _add_rows(section, add, batch, number)
                number += len(batch)
                batch.clear()
            continue
        _add_rows(section, add, batch, number)
        number += len(batch) + 1
        batch.clear()
        if line == PROCESSED_OPEN and section is record.files:
            section = record.processed  # type: ignore[assignment]
            add = partial(add_processed, files=record.files, key=key)
            continue
        if not line.startswith(FILES_CLOSE) or not line.endswith(b"}"):
            raise RecordError(f"line {number - 1}: unexpected data")
        # The longest line: decoded where it lies, never copied first (memory);
        # nothing may follow the manifests (parse() ignores other keys).
        tail = _parsed(memoryview(line)[len(FILES_CLOSE) : -1])
        if next(lines, None) is not None:
            raise RecordError(f"line {number - 1}: unexpected data after the files")
        try:
            record.manifests = _manifests(tail, record.processed)
        except RecordError as error:
            raise RecordError(f"line {number - 1}: {error}") from None
        return record
    raise RecordError("cut short")


def parse(data: bytes, fingerprint: str, key: Key = str) -> Record:
    """Parse and validate a whole record; raise RecordError if untrustworthy."""
    if len(data) > MAX_BYTES:
        raise RecordError(f"larger than {MAX_BYTES} bytes")
    document = _parsed(data)
    record = _head(document, fingerprint)
    assert isinstance(document, dict)
    rows = document.get("files")
    if type(rows) is not list:
        raise RecordError("'files' is not a list")
    for row in rows:
        _add(record.files, row, key)
    processed = document.get("processed", [])
    if type(processed) is not list:
        raise RecordError("'processed' is not a list")
    for row in processed:
        add_processed(record.processed, row, record.files, key)
    record.manifests = _manifests(document.get("manifests", []), record.processed)
    return record


def _head(document: object, fingerprint: str) -> Record:
    """An empty record from the document's head, validated."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RecordError("not a collectstatic-plus record")
    if document.get("version") not in VERSIONS:
        raise RecordError(f"unknown version {document.get('version')!r}")
    if document.get("fingerprint") != fingerprint:
        raise RecordError(
            "written for another destination (storage class, bucket or location differ)"
        )
    if document.get("columns") != list(COLUMNS):
        raise RecordError(f"unknown columns {document.get('columns')!r}")
    processed = document.get("processed_columns", list(PROCESSED_COLUMNS))
    if processed != list(PROCESSED_COLUMNS):
        raise RecordError(f"unknown processed columns {processed!r}")
    state, retired = document.get("state", {}), document.get("retired", [])
    return Record(fingerprint, state=_state(state), retired=_paths(retired, "retired"))


def _parsed(data: bytes | memoryview) -> object:
    try:
        return json.loads(str(data, "utf-8"))
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError
        raise RecordError(f"not valid JSON ({error})") from None


def _add_rows(
    section: dict[str, Any],
    add: Callable[[Any, object], None],
    lines: list[bytes],
    first: int,
) -> None:
    """Add the rows on ``lines`` (numbered from ``first``), one per line:
    parsed together, or line by line to name a bad one."""
    try:
        text = (b"[" + b"".join(lines).removesuffix(b",") + b"]").decode("utf-8")
        rows = json.loads(text)
    except ValueError:
        rows = None
    if type(rows) is not list or len(rows) != len(lines):
        rows = None
    for offset, line in enumerate(lines):
        try:
            row = rows[offset] if rows is not None else _parsed(line.removesuffix(b","))
            add(section, row)
        except RecordError as error:
            raise RecordError(f"line {first + offset}: {error}") from None


def _add(files: dict[str, Entry], row: object, key: Key = str) -> None:
    """Validate one row of ``files`` and add its entry."""
    if type(row) is not list or len(row) != len(COLUMNS):
        raise RecordError(f"a 'files' row is not a list of {len(COLUMNS)}")
    path = row[0]
    if not is_safe_path(path):
        raise RecordError(f"unsafe path {path!r}")
    path = key(path)
    if path in files:
        raise RecordError(f"{path!r} is listed twice")
    files[path] = _entry(*row)


def add_processed(
    processed: dict[str, Processed],
    row: object,
    files: Mapping[str, Entry] = {},
    key: Key = str,
) -> None:
    """Validate one row of ``processed`` and add it, with its MD5 the string
    its file's entry holds and its hashed name held once (memory)."""
    if type(row) is not list or len(row) != len(PROCESSED_COLUMNS):
        raise RecordError(
            f"a 'processed' row is not a list of {len(PROCESSED_COLUMNS)}"
        )
    path, md5, hashed, refs, outputs, consumed = row
    if not is_safe_path(path):
        raise RecordError(f"unsafe path {path!r}")
    if path in processed:
        raise RecordError(f"{path!r} is processed twice")
    if type(md5) is not str or not MD5.fullmatch(md5):
        raise RecordError(f"processed {path!r} has a bad md5")
    if hashed is not None and not is_safe_path(hashed):
        raise RecordError(f"processed {path!r} has a bad hashed name")
    _paths(refs, "refs", f"processed {path!r}")
    _paths(outputs, "outputs", f"processed {path!r}")
    if type(consumed) is not bool:
        raise RecordError(f"processed {path!r} has a bad consumed flag")
    path, refs = key(path), tuple(map(key, refs))
    entry = files.get(path)
    md5 = entry.md5 if entry is not None and entry.md5 == md5 else md5
    outputs = [hashed if name == hashed else name for name in outputs]
    processed[path] = Processed(md5, hashed, refs, tuple(outputs), consumed)


def _entry(
    path: str,
    md5: object,
    size: object,
    token: object,
    seen_size: object,
    etag: object,
    mtime_ns: object,
) -> Entry:
    if type(md5) is not str or not MD5.fullmatch(md5):
        raise RecordError(f"entry for {path!r} has a bad md5")
    if not _is_count(size):
        raise RecordError(f"entry for {path!r} has a bad size")
    if type(token) is str and OLD_TOKEN.fullmatch(token):
        token = None
    elif token is not None and not (type(token) is int and 0 <= token < TOKEN_LIMIT):
        raise RecordError(f"entry for {path!r} has a bad source token")
    if seen_size is None:
        if etag is not None or mtime_ns is not None:
            raise RecordError(f"entry for {path!r} has a bad seen size")
        return Entry(Digest(md5, size), token, None)  # type: ignore[arg-type]
    if not _is_count(seen_size):
        raise RecordError(f"entry for {path!r} has a bad seen size")
    if etag is not None and (type(etag) is not str or len(etag) > MAX_ETAG):
        raise RecordError(f"entry for {path!r} has a bad etag")
    if mtime_ns is not None and not _is_count(mtime_ns):
        raise RecordError(f"entry for {path!r} has a bad mtime_ns")
    seen = Remote(seen_size, etag, mtime_ns)  # type: ignore[arg-type]
    return Entry(Digest(md5, size), token, seen)  # type: ignore[arg-type]


def _manifests(value: object, processed: Mapping[str, Processed]) -> list[list[str]]:
    """The manifests' paths, a hashed name held once (memory)."""
    if not isinstance(value, list):
        raise RecordError("'manifests' is not a list of lists")
    hashed = {row.hashed: row.hashed for row in processed.values() if row.hashed}
    return [[hashed.get(p, p) for p in _paths(paths, "manifests")] for paths in value]


def _paths(value: object, what: str, where: str = "the record") -> list[str]:
    """``value`` if it is a list of safe paths, else a RecordError."""
    if not isinstance(value, list) or not all(map(is_safe_path, value)):
        raise RecordError(f"'{what}' of {where} is not a list of safe paths")
    return value


def _state(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RecordError("'state' is not an object of strings")
    return dict(value)


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


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
            yield b"".join(pending)
            pending.clear()
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending)
