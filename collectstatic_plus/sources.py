"""Find the source files to collect, in the order stock collectstatic does,
and hash their content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.staticfiles.finders import get_finders
from django.core.files.storage import Storage

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Source:
    """One file a finder offers: its path in ``storage`` and its destination path."""

    path: str
    prefixed_path: str
    storage: Storage


@dataclass(frozen=True)
class Digest:
    """A source file's content: MD5 (hex) and size in bytes."""

    md5: str
    size: int


def find_sources(ignore_patterns: list[str]) -> Iterator[Source]:
    """Yield every file each finder lists, duplicates included, finders in order.

    The first file offered for a destination path is the one collected; the
    caller decides what to do with later ones, as stock does.
    """
    for finder in get_finders():
        for path, storage in finder.list(ignore_patterns):
            prefix = getattr(storage, "prefix", None)
            prefixed_path = os.path.join(prefix, path) if prefix else path
            yield Source(path, prefixed_path, storage)


def digest(source: Source) -> Digest:
    """Read the source once, in chunks, and return its MD5 and size."""
    return digest_file(source.storage, source.path)


def digest_file(storage: Storage, name: str) -> Digest:
    """MD5 and size of a file in any storage, read in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with storage.open(name, "rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            size += len(chunk)
    return Digest(md5.hexdigest(), size)


def digest_bytes(data: bytes) -> Digest:
    return Digest(hashlib.md5(data, usedforsecurity=False).hexdigest(), len(data))
