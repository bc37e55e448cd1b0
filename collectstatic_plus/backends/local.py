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
        return _walk(root) if os.path.isdir(root) else {}


def _walk(root: str) -> Listing:
    """Every file below ``root`` (symlinks to directories not followed)."""
    found: Listing = {}
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
                found[prefix + entry.name] = Remote(
                    stat.st_size, None, stat.st_mtime_ns, link
                )
    return found


BACKEND = LocalBackend
