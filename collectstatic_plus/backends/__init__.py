"""What we know about particular storage backends, behind one interface.

``backend_for(storage)`` returns a :class:`Backend`: the generic one works with
any ``Storage`` through its public API. Subclasses add read-only fast paths for
backends we know (a listing of the destination in a few requests, a direct
read of the sync record) and tune clients for threads. Every write still goes
through the storage's own ``save`` and ``delete``, except batched deletes,
which use the storage's own client, bucket and location.

One module per backend (:data:`MODULES`). A backend class says which
storages it ``handles``; :func:`backend_for` asks them in turn.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.files.storage import Storage

from ..sources import Digest, digest_file, hex_md5


@dataclass(slots=True)  # not frozen: one per file, and frozen inits are slow
class Remote:
    """What a listing says the destination holds at one path."""

    size: int
    #: An ETag (or what else changes with the content); one that is an MD5
    #: (32 hex digits) is held as that MD5's int, as a Digest holds it
    #: (see :func:`etag_value`).
    etag: str | int | None = None
    mtime_ns: int | None = None
    is_link: bool = False

    @property
    def md5(self) -> int | None:
        """The content MD5 when the ETag is one (single-part, unencrypted PUT)."""
        etag = self.etag
        return etag if isinstance(etag, int) else None


#: An MD5 as a storage service writes it in an ETag.
_MD5 = re.compile(r"[0-9a-f]{32}")


def etag_value(etag: str | None) -> str | int | None:
    """An ETag as a Remote holds it: an MD5 as its int, anything else as is."""
    if etag is not None and len(etag) == 32 and _MD5.fullmatch(etag):
        return int(etag, 16)
    return etag


def etag_text(etag: str | int | None) -> str | None:
    """An ETag as a Remote holds it, as it was written."""
    return hex_md5(etag) if isinstance(etag, int) else etag


#: What a backend's listing returns: every file at its path.
Found = dict[str, Remote]
#: A listing as a run reads it (see ``onsources.Listed``).
Listing = Mapping[str, Remote]
#: Given a listed path and what the listing says of it: None if it is held
#: elsewhere, else the string and the object to hold for them in the listing.
Keep = Callable[[str, Remote], "tuple[str, Remote] | None"]


def add(found: Found, name: str, remote: Remote, keep: Keep | None) -> None:
    """Add one listed file to ``found``, unless ``keep`` holds it elsewhere."""
    if keep is not None:
        kept = keep(name, remote)
        if kept is None:
            return
        name, remote = kept
    found[name] = remote


class Readable(Protocol):
    """A file opened for reading in binary mode."""

    def read(self, size: int = -1, /) -> bytes: ...


class Backend:
    """Any storage, through the Storage API only."""

    kind = "generic"
    #: Whether reading a destination file is as cheap as a local read.
    local = False
    #: Whether what a written file became is best asked when the record is
    #: written (:meth:`seen_again`, a local stat), not as it is saved.
    sees_later = False

    @staticmethod
    def handles(storage: Storage) -> bool:
        return True

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def storage_class(self) -> type[Any]:
        return self.storage.__class__  # unwraps staticfiles_storage's LazyObject

    def fingerprint(self) -> str:
        """Identifies the destination: class and where it writes."""
        cls = self.storage_class
        parts: dict[str, str] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
        for attr in ("location", "bucket_name", "endpoint_url", "azure_container"):
            value = getattr(self.storage, attr, None)
            if value is not None:
                parts[attr] = str(value)
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def listing(self, keep: Keep | None = None) -> Found | None:
        """Every file under the storage's location, or None if we cannot list.

        Each file is held as ``keep`` returns it (see :func:`add`).
        """
        return None

    def read(self, name: str) -> bytes | None:
        """The file's bytes, None if it does not exist or cannot be read."""
        if not callable(getattr(self.storage, "_open", None)):
            return None
        try:
            with self.storage.open(name, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, NotImplementedError):
            return None
        return data.encode() if isinstance(data, str) else data

    @contextmanager
    def stream(self, name: str) -> Iterator[Readable | None]:
        """The file to read a chunk at a time, None if it does not exist.

        Here it is read whole first; backends that can stream say so.
        """
        data = self.read(name)
        yield None if data is None else io.BytesIO(data)

    def digest(self, name: str) -> Digest | None:
        """MD5 and size of the destination file, None if it is not there."""
        if not callable(getattr(self.storage, "_open", None)):
            return None
        try:
            return digest_file(self.storage, name)
        except (FileNotFoundError, NotImplementedError):
            return None

    @property
    def overwrites_in_place(self) -> bool:
        """Whether ``save`` replaces an existing file instead of renaming."""
        return bool(getattr(self.storage, "file_overwrite", False))

    def delete_many(self, names: Iterable[str]) -> None:
        for name in names:
            self.storage.delete(name)

    @contextmanager
    def prepared_for_threads(self, workers: int) -> Iterator[None]:
        yield

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Call ``count(kind)`` for each request the storage's client makes."""
        yield

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Around the saves whose :meth:`saved` is asked: a backend may
        remember what those saves answered while it lasts, and no longer."""
        yield

    def saved(self, name: str, content: Digest) -> Remote | None:
        """What a listing would now show at ``name``, once this run saved
        ``content`` there, if known without another request; None if not
        (the caller lists again). Asked once, in the thread that saved it,
        unless :attr:`sees_later`."""
        return None

    def seen_again(self, name: str, content: Digest) -> Remote | None:
        """What :meth:`saved` said for ``content``, asked again when the
        record is written, if it can be told without holding anything per
        file: a stat if :attr:`sees_later`, else what an upload whose ETag is
        the content's MD5 shows (callers hold anything else)."""
        return Remote(content.size, content.md5)


#: Backend modules, most specific first; each exposes ``BACKEND``.
MODULES = ("s3", "azure", "gcs", "local")


def backend_for(storage: Storage) -> Backend:
    """The most specific backend we know for ``storage``; the generic one else."""
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        backend: type[Backend] = module.BACKEND
        if backend.handles(storage):
            return backend(storage)
    return Backend(storage)
