"""List what Django's own finders list, in one pass with the stat calls.

``FileSystemFinder`` and ``AppDirectoriesFinder`` list files through
``staticfiles.utils.get_files``: a ``storage.listdir`` per directory (each
path checked by ``safe_join``), every name matched against each ignore
pattern with ``fnmatchcase``. Collecting then stats every file again. For
those two finders (exactly those classes, with their own storage classes)
this module walks the same directories with ``os.scandir``, matches one
compiled pattern, and stats each file from its directory entry: the same
paths, in the same order, with each file's stat token. Any other finder or
storage goes through its own ``list`` (see :func:`sources.find_sources`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import struct
from collections.abc import Callable, Iterator
from hashlib import blake2b

from django.contrib.staticfiles.finders import (
    AppDirectoriesFinder,
    BaseFinder,
    FileSystemFinder,
)
from django.core.files.storage import FileSystemStorage, Storage

#: (path in its storage, the storage, the file's stat token or None)
Listed = tuple[str, Storage, "int | None"]
#: A token hashes these stat fields; the times may be before 1970.
_PACKED = struct.Struct("<QQqq").pack
#: Inode numbers are unsigned 64-bit on every platform we know of.
_INODE = (1 << 64) - 1
#: Tokens keep 60 bits of their hash: two of CPython's 30-bit int digits, a
#: 32-byte int (64 bits take three digits and 48 bytes once allocated).
TOKEN_BITS = (1 << 60) - 1


def token_for(stat: os.stat_result) -> int:
    """The stat token of a file (see ``sources.stat_token``): a 60-bit hash
    of its inode, size, mtime and ctime."""
    packed = _PACKED(
        stat.st_ino & _INODE, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
    )
    hashed = blake2b(packed, digest_size=8).digest()
    return int.from_bytes(hashed, "little") & TOKEN_BITS


def fast_list(
    finder: BaseFinder, ignore_patterns: list[str]
) -> Iterator[Listed] | None:
    """What ``finder.list(ignore_patterns)`` yields, with tokens; None if this
    finder is not one whose listing we can reproduce."""
    if type(finder) is FileSystemFinder:
        storages = _filesystem_storages(finder)
    elif type(finder) is AppDirectoriesFinder:
        storages = _app_storages(finder)
    else:
        return None
    if storages is None:
        return None
    return _listing(storages, _matcher(ignore_patterns))


def _filesystem_storages(finder: FileSystemFinder) -> list[Storage] | None:
    storages: list[Storage] = []
    for _prefix, root in finder.locations:
        if os.path.isdir(root):  # FileSystemFinder.list skips other roots
            storages.append(finder.storages[root])
    return storages if all(type(s) is FileSystemStorage for s in storages) else None


def _app_storages(finder: AppDirectoriesFinder) -> list[Storage] | None:
    storages = list(finder.storages.values())
    if not all(type(s) is finder.storage_class for s in storages):
        return None
    return [s for s in storages if s.exists("")]  # as AppDirectoriesFinder.list


def _listing(
    storages: list[Storage], ignored: Callable[[str], object]
) -> Iterator[Listed]:
    for storage in storages:
        for path, token in _walk(storage.path(""), ignored):
            yield path, storage, token


def _walk(top: str, ignored: Callable[[str], object]) -> list[tuple[str, int | None]]:
    """``get_files``: a directory's files in listing order, then each of its
    subdirectories in turn; a name is matched alone and, below the top, with
    its path. A loop with a stack, not recursion: the same order, cheaper."""
    found: list[tuple[str, int | None]] = []
    stack = [(top, "")]
    while stack:
        directory, location = stack.pop()
        files: list[os.DirEntry[str]] = []
        directories: list[os.DirEntry[str]] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                (directories if entry.is_dir() else files).append(entry)
        for entry in files:
            name = entry.name
            if ignored(name):
                continue
            if location:
                name = location + os.sep + name
                if ignored(name):
                    continue
            try:
                token: int | None = token_for(entry.stat())
            except OSError:  # a broken symlink, or gone since the listing
                token = None
            found.append((name, token))
        for entry in reversed(directories):  # the first one is taken next
            if not ignored(entry.name):
                below = location + os.sep + entry.name if location else entry.name
                stack.append((entry.path, below))
    return found


def _matcher(patterns: list[str]) -> Callable[[str], object]:
    """``matches_patterns(name, patterns)`` as one compiled expression."""
    if not patterns:
        return lambda name: False
    either = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
    return re.compile(either).match
