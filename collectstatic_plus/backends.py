"""What we know about particular storage backends, behind one interface.

``backend_for(storage)`` returns a :class:`Backend`: the generic one works with
any ``Storage`` through its public API. Subclasses add read-only fast paths for
backends we know (a listing of the destination in a few requests, a direct
read of the sync record) and tune clients for threads. Every write still goes
through the storage's own ``save`` and ``delete``, except the batched delete of
S3, which uses the storage's own client, bucket and location.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import FileSystemStorage, Storage

from .sources import Digest, digest_bytes, digest_file

#: Keys in one S3 DeleteObjects request (the service's limit).
S3_DELETE_BATCH = 1000


@dataclass(frozen=True)
class Remote:
    """What a listing says the destination holds at one path."""

    size: int
    etag: str | None = None
    mtime_ns: int | None = None
    is_link: bool = False

    @property
    def md5(self) -> str | None:
        """The content MD5 when the ETag is one (single-part, unencrypted PUT)."""
        etag = self.etag
        if etag and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
            return etag
        return None


Listing = dict[str, Remote]


class Backend:
    """Any storage, through the Storage API only."""

    kind = "generic"

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

    def listing(self) -> Listing | None:
        """Every file under the storage's location, or None if we cannot list."""
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


class LocalBackend(Backend):
    """FileSystemStorage: a listing is one directory walk."""

    kind = "local"

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


class S3Backend(Backend):
    """django-storages S3Storage: ListObjectsV2 pages, one client for all threads.

    For threads, all workers share one boto3 client (django-storages would
    build a session and client per thread, about a tenth of a second of CPU
    each under the GIL; botocore clients are thread-safe), the connection pool
    is widened to the worker count (botocore keeps 10 by default), and uploads
    run on our workers instead of an s3transfer thread pool per file.
    """

    kind = "s3"

    @property
    def s3(self) -> Any:
        return self.storage

    @property
    def prefix(self) -> str:
        location = str(self.s3.location or "").strip("/")
        return location + "/" if location else ""

    @property
    def client(self) -> Any:
        return self.s3.connection.meta.client

    def listing(self) -> Listing | None:
        found: Listing = {}
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.s3.bucket_name, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                name = item["Key"][len(self.prefix) :]
                if name and not name.endswith("/"):
                    found[name] = Remote(item["Size"], item["ETag"].strip('"'))
        return found

    def read(self, name: str) -> bytes | None:
        try:
            response = self.client.get_object(
                Bucket=self.s3.bucket_name, Key=self.s3._normalize_name(name)
            )
        except Exception as error:
            if _http_status(error) == 404:
                return None
            raise
        data: bytes = response["Body"].read()
        if response.get("ContentEncoding") == "gzip":
            data = gzip.decompress(data)
        return data

    def digest(self, name: str) -> Digest | None:
        data = self.read(name)
        return None if data is None else digest_bytes(data)

    def delete_many(self, names: Iterable[str]) -> None:
        keys = [self.s3._normalize_name(name) for name in names]
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = keys[start : start + S3_DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.s3.bucket_name,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise OSError(
                    f"could not delete {len(errors)} object(s), first "
                    f"{first.get('Key')!r}: {first.get('Message')}"
                )

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Count API calls (PutObject, ListObjectsV2, ...) on the client."""
        events = self.client.meta.events
        unique_id = f"collectstatic-plus-{id(count)}"

        def after_call(model: Any, **kwargs: Any) -> None:
            count(model.name)

        events.register("after-call.s3", after_call, unique_id=unique_id)
        try:
            yield
        finally:
            events.unregister("after-call.s3", unique_id=unique_id)

    @contextmanager
    def prepared_for_threads(self, workers: int) -> Iterator[None]:
        if workers <= 1:
            yield
            return
        s3 = self.s3
        saved = (s3.client_config, s3.transfer_config)
        pool = max(workers, s3.client_config.max_pool_connections or 10)
        s3.client_config = s3.client_config.merge(_botocore_config(pool))
        s3.transfer_config = copy.copy(s3.transfer_config)
        s3.transfer_config.use_threads = False
        _drop_clients(s3, shared=True)
        s3.bucket  # noqa: B018 - build the one shared client before workers start
        try:
            yield
        finally:
            s3.client_config, s3.transfer_config = saved
            _drop_clients(s3)


def _http_status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def _botocore_config(max_pool_connections: int) -> Any:
    from botocore.config import Config

    return Config(max_pool_connections=max_pool_connections)


class _SharedConnection:
    """Stands in for django-storages' per-thread cache: one client for all."""

    connection: Any = None


def _drop_clients(s3: Any, shared: bool = False) -> None:
    """Forget cached clients so the next use builds them from the current config."""
    s3._bucket = None
    s3._connections = _SharedConnection() if shared else threading.local()


def _s3_storage_class() -> type[Any] | None:
    # An S3Storage instance means its module is loaded; importing it otherwise
    # would cost boto3's import (a sixth of a second) for nothing.
    module = sys.modules.get("storages.backends.s3")
    return getattr(module, "S3Storage", None)


def backend_for(storage: Storage) -> Backend:
    s3_class = _s3_storage_class()
    if s3_class is not None and isinstance(storage, s3_class):
        return S3Backend(storage)
    if isinstance(storage, FileSystemStorage):
        return LocalBackend(storage)
    return Backend(storage)


@contextmanager
def prepared_for_threads(storage: Storage, workers: int) -> Iterator[None]:
    """Tune ``storage``'s client for ``workers`` threads while the block runs."""
    with backend_for(storage).prepared_for_threads(workers):
        yield
