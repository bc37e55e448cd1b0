"""Content hashing: the MD5 and size of a file, read once, in chunks.

A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, NamedTuple

from django.core.files import File
from django.core.files.storage import Storage

#: Bytes read at a time.
CHUNK = 256 * 1024


class Digest(NamedTuple):
    """A file's content: its MD5 (32 lowercase hex digits) and size in bytes."""

    md5: str
    size: int


def digest_stream(handle: Any) -> Digest:
    """MD5 and size of what ``handle.read`` yields, read in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := handle.read(CHUNK):
        md5.update(chunk)
        size += len(chunk)
    return Digest(md5.hexdigest(), size)


def digest_file(storage: Storage, name: str) -> Digest:
    """MD5 and size of a file in any storage."""
    with storage.open(name, "rb") as handle:
        return digest_stream(handle)


class HashingFile(File):  # type: ignore[type-arg]
    """A source file that hashes what a storage reads from it while saving.

    ``digest`` is the content's digest if the file was read once from its
    start to its end, else None (the caller then reads it again).
    """

    def __init__(self, file: Any, name: str | None = None) -> None:
        super().__init__(file, name)
        self._raw: Any = file
        self._restart()

    def _restart(self) -> None:
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
            self._restart()
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
        return Digest(self._md5.hexdigest(), self._size)
