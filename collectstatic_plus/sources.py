"""Find the source files to collect, in the order stock collectstatic does.

Each file a finder offers becomes a :class:`Source`, with a *stat token*: a
hash of its inode, size, modification and change times. A token equal to the
one the sync record saw means the file was not touched since, so its recorded
digest can be used without reading it (see :mod:`.plan`).

``FileSystemFinder`` and ``AppDirectoriesFinder`` list files through
``staticfiles.utils.get_files``: a ``storage.listdir`` per directory, each
name matched against each ignore pattern, then collecting stats every file
again. For exactly those two classes (with their own storage classes) this
module walks the same directories with ``os.scandir``, matches one compiled
pattern and takes each token from the directory entry: the same paths in the
same order. Any other finder is listed by its own ``list``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, TypeVar

from django.contrib.staticfiles.finders import (
    AppDirectoriesFinder,
    BaseFinder,
    FileSystemFinder,
    get_finders,
)
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.management.base import CommandError

from .digest import Digest

#: (path in its storage, the storage, the file's stat token or None)
Listed = tuple[str, Storage, "int | None"]
#: A token hashes these stat fields; the times may be before 1970.
_PACKED = struct.Struct("<QQqq").pack
#: Inode numbers are unsigned 64-bit on every platform we know of.
_INODE = (1 << 64) - 1
V = TypeVar("V")


@dataclass(slots=True, eq=False)
class Source:
    """One file a finder offers for a destination path."""

    path: str
    prefixed_path: str
    #: The storage it is in (a minifying view of it, if it is minified).
    storage: Storage
    #: Where it was found, for reports: the finder and, if it has several
    #: roots, which one.
    origin: str
    #: Its stat token (see :func:`token_for`), None without a local path.
    token: int | None = None
    #: Its content as it is written (minified, if it is), once known: from
    #: the sync record, read, or hashed while it was copied.
    digest: Digest | None = None


def find_sources(ignore_patterns: list[str]) -> Iterator[Source]:
    """Yield every file each finder lists, duplicates included, finders in order.

    The first file offered for a destination path is the one collected; the
    caller decides what to do with later ones, as stock does.
    """
    for finder in get_finders():
        name = type(finder).__name__
        origins = {
            id(storage): f"{name}:{key}"
            for key, storage in getattr(finder, "storages", {}).items()
        }
        for path, storage, token in _listed(finder, ignore_patterns):
            prefix = getattr(storage, "prefix", None)
            prefixed_path = os.path.join(prefix, path) if prefix else path
            origin = origins.get(id(storage), name)
            yield Source(path, prefixed_path, storage, origin, token)


def keyed_by_sources(
    found: Mapping[str, V],
    sources: Mapping[str, Source],
    listed_name: Callable[[str], str] = str,
) -> dict[str, V]:
    """``found`` (a listing) keyed by the sources' own path strings where a
    source has that path, or is listed as ``listed_name`` gives it (a
    storage may store it under another name): each path is held once."""
    own = own_path(sources)
    keyed = {own(path): value for path, value in found.items()}
    renamed = stored_names(sources, listed_name)
    later = shadowed(sources, renamed)  # (the name is an earlier source's)
    for path, name in renamed.items():
        if name in keyed and path not in keyed and path not in later:
            keyed[path] = keyed.pop(name)
    return keyed


def stored_names(
    sources: Mapping[str, Source], listed_name: Callable[[str], str]
) -> dict[str, str]:
    """The sources a storage stores under another name than their path
    (``listed_name``), with that name, in the sources' order."""
    named = ((path, listed_name(path)) for path in sources)
    return {path: name for path, name in named if name != path}


def shadowed(sources: Iterable[str], renamed: Mapping[str, str]) -> dict[str, str]:
    """Each source the storage stores under the name of an earlier one (in
    finder order), with the earlier one's path: django-storages stores
    ``a\\b.css`` as ``a/b.css``, AzureStorage ``x.`` as ``x``. Stock saves
    the first; the later one finds that file there, newer, and is left
    ("unmodified"), every run."""
    if not renamed:  # (the usual case: no storage name is shared)
        return {}
    names = set(renamed.values())
    first: dict[str, str] = {}
    later: dict[str, str] = {}
    for path in sources:
        name = renamed.get(path, path)
        if name in names and (winner := first.setdefault(name, path)) != path:
            later[path] = winner
    return later


def source_folder_of(path: str | os.PathLike[str]) -> str | None:
    """The folder on local disk a finder collects from that holds ``path``
    (what is put there is collected, and served), if one does."""
    where = os.path.realpath(path)
    for finder in get_finders():
        storages = getattr(finder, "storages", None)
        found = [*(storages.values() if isinstance(storages, Mapping) else ())]
        for storage in [*found, getattr(finder, "storage", None)]:
            if isinstance(storage, FileSystemStorage):
                folder = os.path.realpath(storage.location)
                if os.path.commonpath([folder, where]) == folder:
                    return str(storage.location)
    return None


def own_path(sources: Mapping[str, Source]) -> Callable[[str], str]:
    """A path as the sources hold it (the same string object), else itself."""

    def own(path: str) -> str:
        source = sources.get(path)
        return path if source is None else source.prefixed_path

    return own


def token_for(stat: os.stat_result) -> int:
    """A file's stat token: a 64-bit hash of its inode, size, mtime and ctime.

    A new file (another inode), a write (mtime) or a write whose mtime was
    put back (ctime) all change it.
    """
    packed = _PACKED(
        stat.st_ino & _INODE, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
    )
    return int.from_bytes(blake2b(packed, digest_size=8).digest(), "little")


def stat_token(storage: Storage, name: str) -> int | None:
    """The stat token of a file in a storage; None without a local path."""
    try:
        stat = os.stat(storage.path(name))
    except Exception:  # no local path, a path outside its root, or gone
        return None
    return token_for(stat)


def mixed(token: int, key: str) -> int:
    """A stat token that also depends on ``key`` (minifier settings)."""
    mix = blake2b(f"{token}\0{key}".encode(), digest_size=8)
    return int.from_bytes(mix.digest(), "little")


def _listed(finder: BaseFinder, ignore_patterns: list[str]) -> Iterator[Listed]:
    """The finder's listing with each file's stat token, fast where we can."""
    fast = fast_list(finder, ignore_patterns)
    if fast is not None:
        yield from fast
        return
    for path, storage in finder.list(ignore_patterns):
        yield path, storage, stat_token(storage, path)


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
    its path."""
    found: list[tuple[str, int | None]] = []
    stack = [(top, "")]
    while stack:
        directory, location = stack.pop()
        files: list[os.DirEntry[str]] = []
        directories: list[os.DirEntry[str]] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    (directories if entry.is_dir() else files).append(entry)
        except OSError as error:  # a symlink that loops, to itself or a folder
            raise CommandError(f"Could not list '{directory}': {error}") from error
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


class SourceFile(File):  # type: ignore[type-arg]
    """A collected file as post_process opens it: where it came from, and
    its content's digest if the run knows it."""

    origin: tuple[Storage, str]
    digest: Digest | None


class OriginStorage:
    """Stands in for a finder's storage in ``post_process``'s ``paths``."""

    __slots__ = ("_digest", "_storage")  # one per source

    def __init__(self, storage: Storage, digest: Digest | None = None) -> None:
        self._storage = storage
        self._digest = digest

    def open(self, path: str, mode: str = "rb") -> SourceFile:
        handle = self._storage.open(path, mode)
        wrapped = SourceFile(handle.file, handle.name)
        wrapped.origin = (self._storage, path)
        wrapped.digest = self._digest
        return wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def found_files(
    sources: Mapping[str, Source], only: Iterable[str]
) -> dict[str, tuple[Storage, str]]:
    """What ``post_process`` is given: stock's ``found_files`` for the
    sources in ``only``, with storages that remember the file's origin."""
    return {
        name: (
            OriginStorage(sources[name].storage, sources[name].digest),  # type: ignore[misc]
            sources[name].path,
        )
        for name in only
    }


def duplicate_message(path: str) -> str:
    """Stock's message for a later file with a path already found."""
    return (
        f"Found another file with the destination path '{path}'. It will be "
        "ignored since only the first encountered file is collected. If this "
        "is not what you want, make sure every static file has a unique path."
    )
