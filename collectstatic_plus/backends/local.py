"""Local disk: FileSystemStorage and its subclasses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from stat import S_ISLNK

from django.core.files.storage import FileSystemStorage, Storage

from ..sources import Digest
from . import Backend, Found, Keep, Readable, Remote, add


class LocalBackend(Backend):
    """FileSystemStorage: a listing is one directory walk."""

    kind = "local"
    local = True
    sees_later = True

    @staticmethod
    def handles(storage: Storage) -> bool:
        return isinstance(storage, FileSystemStorage)

    def seen_again(self, name: str, content: Digest) -> Remote | None:
        """The file as a walk would list it now: one ``lstat``."""
        try:
            stat = os.lstat(self.storage.path(name))
        except FileNotFoundError:  # gone since: nothing seen
            return None
        size = content.size if stat.st_size == content.size else stat.st_size
        return Remote(size, None, stat.st_mtime_ns, S_ISLNK(stat.st_mode))

    @contextmanager
    def stream(self, name: str) -> Iterator[Readable | None]:
        """The file, opened through the storage: nothing is read up front."""
        try:
            handle = self.storage.open(name, "rb")
        except FileNotFoundError:
            handle = None
        if handle is None:
            yield None
            return
        with handle:
            yield handle

    def listing(self, keep: Keep | None = None) -> Found | None:
        root = str(self.storage.location)  # type: ignore[attr-defined]
        return _walk(root, keep) if os.path.isdir(root) else {}


def _walk(root: str, keep: Keep | None = None) -> Found:
    """Every file below ``root`` (symlinks to directories not followed)."""
    found: Found = {}
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, prefix + entry.name + "/"))
                    continue
                link = entry.is_symlink()
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # a broken symlink
                    stat = entry.stat(follow_symlinks=False)
                remote = Remote(stat.st_size, None, stat.st_mtime_ns, link)
                add(found, prefix + entry.name, remote, keep)
    return found


BACKEND = LocalBackend
