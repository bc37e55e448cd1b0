"""Local disk: FileSystemStorage and its subclasses (WhiteNoise's included)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from stat import S_ISLNK

from django.core.files.storage import FileSystemStorage, Storage

from ..digest import Digest
from .base import Backend, Listing, Payload, Readable, Remote, as_bytes, content_version


class LocalBackend(Backend):
    """FileSystemStorage: a listing is one directory walk, a file one lstat."""

    local = True

    @staticmethod
    def handles(storage: Storage) -> bool:
        return isinstance(storage, FileSystemStorage)

    @staticmethod
    def root(location: object) -> str:
        return os.path.realpath(str(location)).strip("/")

    def listing(self) -> Listing | None:
        root = str(self.storage.location)  # type: ignore[attr-defined]
        return _walk(root) if os.path.isdir(root) else {}

    @contextmanager
    def stream(self, name: str) -> Iterator[Readable | None]:
        """The file, opened through the storage: nothing is read up front."""
        try:
            handle = self.storage.open(name, "rb")
        except FileNotFoundError:
            yield None
            return
        with handle:
            yield handle

    # The lease: a create hard-links a temporary file into place (failing if
    # one is there), a replace renames one; a version is the content's MD5.
    conditional = True

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        try:
            with open(self.storage.path(name), "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return data, content_version(data)

    def create(self, name: str, data: Payload) -> str | None:
        data = as_bytes(data)
        path = self.storage.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        beside = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(beside, "wb") as handle:
            handle.write(data)
        try:  # whole or not at all: a reader never sees it half written
            os.link(beside, path)
        except FileExistsError:
            return None
        finally:
            os.remove(beside)
        return content_version(data)

    def replace(self, name: str, data: Payload, version: str) -> str | None:
        data = as_bytes(data)
        path = self.storage.path(name)
        with _exclusive(path):  # the compare and the swap as one step
            current = self.fetch(name)
            if current is None or current[1] != version:
                return None
            beside = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(beside, "wb") as handle:
                handle.write(data)
            os.replace(beside, path)
        return content_version(data)

    def remove(self, name: str, version: str) -> bool:
        path = self.storage.path(name)
        with _exclusive(path):
            current = self.fetch(name)
            if current is None or current[1] != version:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return True

    def saved(self, name: str, content: Digest) -> Remote | None:
        """The file as a walk would list it now: one ``lstat``."""
        try:
            return _remote(os.lstat(self.storage.path(name)))
        except FileNotFoundError:
            return None


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[None]:
    """One compare-and-swap of a lease at a time among the runs on this
    machine: an exclusive lock on its folder (none where the platform has
    no ``flock``)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # (and the lock with it)


def _remote(stat: os.stat_result, link: bool | None = None) -> Remote:
    is_link = S_ISLNK(stat.st_mode) if link is None else link
    return Remote(stat.st_size, None, stat.st_mtime_ns, is_link)


def _walk(root: str) -> Listing:
    """Every file below ``root``, through symlinks to folders as the storage's
    own calls go (each folder once: a link to a folder above is no loop)."""
    found: Listing = {}
    stack = [(root, "")]
    seen: set[tuple[int, int]] = set()
    while stack:
        directory, prefix = stack.pop()
        folder = os.stat(directory)
        if (folder.st_dev, folder.st_ino) in seen:
            continue
        seen.add((folder.st_dev, folder.st_ino))
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append((entry.path, prefix + entry.name + "/"))
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # a broken symlink
                    stat = entry.stat(follow_symlinks=False)
                found[prefix + entry.name] = _remote(stat, entry.is_symlink())
    return found


BACKEND = LocalBackend
