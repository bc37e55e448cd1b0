"""A storage that post-processing writes into, and its own (unpatched) methods.

While :class:`~.staging.Staging` answers the storage's calls, it writes
through these: on local disk beside the final name and renamed over it, so
an interrupted write never leaves a partial file under a hashed name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.management.base import CommandError

from .digest import Digest, digest_file
from .pool import Failure

#: The longest file name most file systems take, in bytes.
NAME_MAX = 255
#: The storage methods Staging replaces while post_process runs.
PATCHED = ("exists", "open", "delete", "_save", "size", "file_hash")


class FlushError(Exception):
    """Post-processed files that could not be written, each with its error."""

    def __init__(self, failures: list[Failure]) -> None:
        super().__init__(f"{len(failures)} post-processed file(s) could not be written")
        self.failures = failures

    def said(self, write: Callable[[str], object]) -> CommandError:
        """Each file that could not be written, said; the error to raise."""
        failures = sorted(self.failures, key=lambda failure: failure.path)
        for failed in failures:
            write(f"Could not write '{failed.path}': {failed.reason}")
        names = ", ".join(failure.path for failure in failures)
        return CommandError(
            f"{len(failures)} post-processed file(s) could not be written: "
            f"{names}. The manifest was not updated."
        )


class SourceChanged(OSError):
    """A source read for a hashed copy is not what its name was made from."""


@contextlib.contextmanager
def named(name: str) -> Iterator[None]:
    """A file's own write error, as a FlushError that names it."""
    try:
        yield
    except OSError as error:
        raise FlushError([Failure(name, error)]) from error


@dataclass
class Staged:
    """A write post-processing asked for: a source file to copy, or bytes in
    a temporary file; neither once it is written (read it back from there)."""

    digest: Digest
    origin: tuple[Storage, str] | None = None
    spool: str | None = None


def staged_from(content: Any) -> tuple[Staged, bytes | None]:
    """A source file as its origin; any other content as its bytes."""
    origin = getattr(content, "origin", None)
    if origin is not None:
        digest = getattr(content, "digest", None)
        if not isinstance(digest, Digest):
            digest = digest_file(*origin)
        return Staged(digest, origin=origin), None
    if hasattr(content, "seek"):
        content.seek(0)
    data = content.read()
    data = data.encode() if isinstance(data, str) else data
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return Staged(Digest(md5, len(data))), data


class Spool:
    """Bytes kept for later, each in a temporary file (never all in memory)."""

    def __init__(self) -> None:
        self.folder: str | None = None

    def keep(self, staged: Staged, data: bytes | None) -> Staged:
        """``staged``, its bytes (if any) moved to a file of the spool."""
        if data is None:
            return staged
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="collectstatic-plus-")
        with tempfile.NamedTemporaryFile(dir=self.folder, delete=False) as spool:
            spool.write(data)
        return Staged(staged.digest, spool=spool.name)

    def close(self) -> None:
        """Remove every file kept."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def saves_as_files(storage: Storage) -> bool:
    """Whether ``storage`` saves with FileSystemStorage's own ``_save`` (one of
    its own may act on the name it is given, or on the bytes)."""
    return type(storage)._save is vars(FileSystemStorage)["_save"]  # type: ignore[attr-defined]


class Target:
    """A storage being post-processed into, and its own (unpatched) methods."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.exists = storage.exists
        self.open = storage.open
        self.size = storage.size
        self.delete = storage.delete
        self._save = storage._save
        self.file_hash = getattr(storage, "file_hash", None)
        #: Whether :meth:`replace` may write beside a name: not through a
        #: storage's own ``_save`` (it may act on the name it is given).
        self.renames = saves_as_files(storage)

    def write(self, name: str, content: File, overwrites: bool) -> str:  # type: ignore[type-arg]
        if not overwrites and self.exists(name):
            self.delete(name)
        return str(self._save(name, content))

    def replace(self, name: str, content: File) -> bool:  # type: ignore[type-arg]
        """On local disk, write beside ``name`` and rename over it (atomic).

        False if the storage has no local path or a ``_save`` of its own.
        """
        if not self.renames:
            return False
        try:
            final = self.storage.path(name)
        except NotImplementedError:
            return False
        saved = asked = f"{name}.{os.getpid()}.tmp"
        if len(os.fsencode(os.path.basename(asked))) > NAME_MAX:
            return False  # (no room for the suffix: written in place, as stock)
        try:
            saved = self._save(saved, content)
            if saved == asked.replace("\\", "/"):  # (it says "a\\b" as "a/b")
                saved = asked
            os.replace(self.storage.path(saved), final)
        except BaseException:  # Ctrl-C included: leave no temporary behind
            with contextlib.suppress(OSError):
                os.remove(self.storage.path(saved))
            raise
        return True

    def write_plain(self, name: str, data: bytes) -> None:
        """Write ``name`` as WhiteNoise's compressor writes its .gz and .br: a
        plain ``open()``, not the storage's save, so its mode follows the
        umask, not FILE_UPLOAD_PERMISSIONS. Beside it and renamed over it
        (atomic), unless its name leaves no room for the suffix (in place)."""
        final = self.storage.path(name)
        beside = f"{final}.{os.getpid()}.tmp"
        if len(os.fsencode(os.path.basename(beside))) > NAME_MAX:
            beside = final
        try:
            with open(beside, "wb") as out:
                out.write(data)
            os.replace(beside, final)
        except BaseException:  # Ctrl-C included: leave no temporary behind
            if beside != final:
                with contextlib.suppress(OSError):
                    os.remove(beside)
            raise

    def restore(self) -> None:
        for name in PATCHED:
            self.storage.__dict__.pop(name, None)
