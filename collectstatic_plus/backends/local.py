"""Local disk: FileSystemStorage and its subclasses."""

from __future__ import annotations

import os

from django.core.files.storage import FileSystemStorage, Storage

from . import Backend, Listing, Remote


class LocalBackend(Backend):
    """FileSystemStorage: a listing is one directory walk."""

    kind = "local"
    local = True

    @staticmethod
    def handles(storage: Storage) -> bool:
        return isinstance(storage, FileSystemStorage)

    def listing(self) -> Listing | None:
        root = str(self.storage.location)  # type: ignore[attr-defined]
        found: Listing = {}
        if os.path.isdir(root):
            _walk(root, "", found)
        return found


def _walk(directory: str, prefix: str, found: Listing) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, name + "/", found)
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:  # a broken symlink
                stat = entry.stat(follow_symlinks=False)
            found[name] = Remote(
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                is_link=entry.is_symlink(),
            )


BACKEND = LocalBackend
