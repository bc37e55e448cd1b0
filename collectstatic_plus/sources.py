"""Find the source files to collect, in the order stock collectstatic does,
and hash their content."""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.staticfiles.finders import BaseFinder, get_finders
from django.core.files import File
from django.core.files.storage import Storage

from .walk import TOKEN_BITS, Listed, fast_list, token_for

if TYPE_CHECKING:
    from .backends import Remote
    from .record import Entry

CHUNK = 256 * 1024


class State(enum.Enum):
    """What a run did with a source, so far."""

    PENDING = 0  # nothing yet, or it failed
    KEPT = 1  # the destination already holds its content
    WRITTEN = 2  # this run wrote it
    PRETENDED = 3  # a dry run would have written it


@dataclass(frozen=True, slots=True)
class Root:
    """Where a finder lists files: the storage, and how reports name it.

    One per root, not per file: a Source holds one slot for both.
    """

    storage: Storage
    origin: str = ""


@dataclass(slots=True)  # not frozen: one per file, and frozen inits are slow
class Source:
    """One file a finder offers, and what a run learns and does about it.

    It is the run's one object per file: the record entries and content
    digests below live in its slots, not in dicts of their own.
    """

    path: str
    prefixed_path: str
    #: The storage it is in, and its name, shared by all the root's files.
    root: Root
    #: Its stat token when it was listed (see :func:`stat_token`).
    token: int | None = None
    #: The previous sync record's entry for its destination path, if any.
    recorded: Entry | None = None
    #: What a listing of the destination showed at that path, if anything.
    listed: Remote | None = None
    #: Its content, once known: the recorded entry if the file was not touched
    #: since, else as read or written. Once the destination holds it, the
    #: next record's entry (see ``Recorder.settle``).
    content: Digest | None = None
    state: State = State.PENDING

    @property
    def storage(self) -> Storage:
        return self.root.storage

    @property
    def origin(self) -> str:
        """Where it was found: the finder and, if it has several, which root."""
        return self.root.origin


@dataclass(slots=True, eq=False)  # not frozen: one per file, and frozen inits are slow
class Digest:
    """A file's content: its MD5 and its size in bytes.

    The MD5 is an int (48 bytes allocated; its 32 hex digits as a string take
    80): compared as often as a string, and written out as hex (:func:`hex_md5`).
    """

    md5: int
    size: int

    def __eq__(self, other: object) -> bool:
        """Same content, whatever else a subclass (a record entry) holds."""
        if not isinstance(other, Digest):
            return NotImplemented
        return self.md5 == other.md5 and self.size == other.size

    __hash__ = None  # type: ignore[assignment]


def find_sources(ignore_patterns: list[str]) -> Iterator[Source]:
    """Yield every file each finder lists, duplicates included, finders in order.

    The first file offered for a destination path is the one collected; the
    caller decides what to do with later ones, as stock does.
    """
    for finder in get_finders():
        roots = {id(s): key for key, s in getattr(finder, "storages", {}).items()}
        made: dict[int, Root] = {}  # one per root, not one per file
        for path, storage, token in _listed(finder, ignore_patterns):
            prefix = getattr(storage, "prefix", None)
            prefixed_path = os.path.join(prefix, path) if prefix else path
            root = made.get(id(storage))
            if root is None:
                key = roots.get(id(storage))
                origin = type(finder).__name__ + (f":{key}" if key else "")
                root = made[id(storage)] = Root(storage, origin)
            yield Source(path, prefixed_path, root, token)


def _listed(finder: BaseFinder, ignore_patterns: list[str]) -> Iterator[Listed]:
    """The finder's listing with each file's stat token, fast where we can."""
    fast = fast_list(finder, ignore_patterns)
    if fast is not None:
        yield from fast
        return
    for path, storage in finder.list(ignore_patterns):
        yield path, storage, stat_token(storage, path)


def digest(source: Source) -> Digest:
    """Read the source once, in chunks, and return its MD5 and size."""
    return digest_file(source.storage, source.path)


def digest_file(storage: Storage, name: str) -> Digest:
    """MD5 and size of a file in any storage, read in chunks."""
    with storage.open(name, "rb") as handle:
        return digest_stream(handle)


def digest_stream(handle: Any) -> Digest:
    """MD5 and size of what ``handle.read`` yields, read in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := handle.read(CHUNK):
        md5.update(chunk)
        size += len(chunk)
    return Digest(md5_value(md5), size)


def md5_value(hasher: Any) -> int:
    """An MD5 hasher's digest as the int a Digest holds."""
    return int.from_bytes(hasher.digest(), "big")


def hex_md5(value: int) -> str:
    """An MD5 held as an int, as its 32 lowercase hex digits."""
    return f"{value:032x}"


class HashingFile(File):  # type: ignore[type-arg]
    """A source file that hashes what a storage reads from it while saving.

    ``digest`` is the content's digest if the file was read once from its
    start to its end, else None (the caller then reads it again).
    """

    def __init__(self, file: Any, name: str | None = None) -> None:
        super().__init__(file, name)
        self._raw: Any = file
        self._reset()

    def _reset(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0
        self._whole = True

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._raw.read(size)
        self._md5.update(data)
        self._size += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) == (0, os.SEEK_SET):
            self._reset()
        else:
            self._whole = False
        return int(self._raw.seek(offset, whence))

    @property
    def digest(self) -> Digest | None:
        """None unless every byte went through ``read`` (a storage may read
        the underlying ``file`` directly, as AzureStorage does)."""
        try:
            through_us = self._raw.tell() == self._size
            at_end = self._raw.read(1) == b""
        except (AttributeError, OSError, ValueError):
            return None
        if not (self._whole and through_us and at_end):
            return None
        return Digest(md5_value(self._md5), self._size)


def stat_token(storage: Storage, name: str) -> int | None:
    """A token for the source file: its inode, size, mtime and ctime.

    Equal tokens across runs mean the file was not touched, so its recorded
    digest can be reused without reading it: a new file (another inode), a
    write (mtime) or a write whose mtime was put back (ctime) all change it.
    None when the source storage has no local path.
    """
    try:
        stat = os.stat(storage.path(name))
    except Exception:  # no local path, a path outside its root, or gone
        return None
    return token_for(stat)


def mixed(token: int, key: str) -> int:
    """A stat token that also depends on ``key`` (minifier settings)."""
    mix = hashlib.blake2b(f"{token}\0{key}".encode(), digest_size=8)
    return int.from_bytes(mix.digest(), "little") & TOKEN_BITS


def digest_bytes(data: bytes) -> Digest:
    return Digest(md5_value(hashlib.md5(data, usedforsecurity=False)), len(data))
