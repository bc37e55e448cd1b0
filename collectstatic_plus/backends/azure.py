"""Azure Blob Storage: django-storages' AzureStorage and its subclasses.

Private members used here (django-storages 1.14.0-1.14.6, azure-storage-blob
12.x): ``AzureStorage._get_valid_path`` (the blob a name is stored as); the
client's ``_pipeline._transport`` (azure-core's requests transport, to count
and widen its connections); requests' ``HTTPAdapter._pool_*`` (put back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import SuspiciousOperation
from django.core.files.storage import Storage

from ..digest import Digest
from ..retry import first_line
from .base import Backend, DeleteFailed, Listing, Payload, Remote

#: Blobs per List Blobs page (the service's maximum).
AZURE_LIST_PAGE = 5000
#: Sub-requests in one blob batch request (the service's limit).
AZURE_DELETE_BATCH = 256


class AzureBackend(Backend):
    """django-storages AzureStorage: List Blobs pages, batched deletes.

    The listing gives each blob's Content-MD5, which Blob Storage keeps for
    every blob written by a single Put Blob (any file under the SDK's
    ``max_single_put_size``, 64 MiB by default), so a destination without a
    sync record is still compared by content at no extra request.

    For threads, the storage's client (created lazily by django-storages, then
    shared) is built before the workers start, its HTTP connection pool is
    widened to the worker count (requests keeps 10 per host, and discards the
    connections of any further worker after each request), and large uploads
    run on our workers instead of a pool of ``AZURE_UPLOAD_MAX_CONN`` threads
    per file. The storage is as configured again afterwards.
    """

    utf8_names = True

    transient_names = frozenset({"ServiceRequestError", "ServiceResponseError"})
    permanent_names = frozenset({"ClientAuthenticationError"})
    unreachable_names = frozenset({"ServiceRequestError", "ServiceResponseError"})
    #: Its ExponentialRetry waits 15 + 18 + 24 s before giving up.
    sdk_retries_connections = True
    transient_codes = frozenset({"InternalError", "OperationTimedOut"})
    throttling_codes = frozenset({"ServerBusy"})
    permanent_codes = frozenset(
        {"AuthenticationFailed", "AuthorizationFailure", "ContainerNotFound"}
    )
    check_hint = "credentials, container and permissions"
    #: Blobs asked for per List Blobs request.
    page_size = AZURE_LIST_PAGE
    #: Blobs deleted per blob batch request.
    delete_batch = AZURE_DELETE_BATCH

    @staticmethod
    def handles(storage: Storage) -> bool:
        from storages.backends.azure_storage import (
            AzureStorage,  # loaded already (see backends/__init__.py)
        )

        return isinstance(storage, AzureStorage)

    @property
    def azure(self) -> Any:
        return self.storage

    def ready(self) -> None:
        self.azure.client  # noqa: B018 (no container: fails here, in one line)
        self.check_location(self.blob_name)

    @property
    def prefix(self) -> str:
        """The location as AzureStorage writes it (``.static`` as ``static/``)."""
        return self.blob_name("x")[:-1]

    def blob_name(self, name: str) -> str:
        """The blob that the storage reads and writes for ``name``.

        AzureStorage strips dots and slashes from both ends of the full blob
        name: with no location, ``.collectstatic-plus.json`` is stored as
        ``collectstatic-plus.json``.
        """
        return str(self.azure._get_valid_path(name))

    def fingerprint(self) -> str:
        base = super().fingerprint()
        account = getattr(self.azure, "account_name", None)
        if not account:
            return base
        text = f"{base}\0account_name={account}"
        return hashlib.sha256(text.encode()).hexdigest()

    def listing(self) -> Listing | None:
        prefix = self.prefix
        found: Listing = {}
        blobs = self.azure.client.list_blobs(
            name_starts_with=prefix or None,
            include=["metadata"],
            results_per_page=self.page_size,
            timeout=self.azure.timeout,
        )
        for blob in blobs:
            full: str = blob.name
            if full.endswith("/") or _is_directory(blob):
                continue
            name = full[len(prefix) :]
            if name:
                found[name] = Remote(int(blob.size or 0), _etag(blob))
        return found

    @property
    def endpoint(self) -> str:
        account = getattr(self.azure, "account_name", None)
        return f"Azure account {account}" if account else "Azure Blob Storage"

    def listed_name(self, name: str) -> str:
        """AzureStorage strips dots from the ends of a blob name: with no
        location, ``.collectstatic-plus.json`` is listed without its dot."""
        try:
            return self.blob_name(name)[len(self.prefix) :]
        except (ValueError, SuspiciousOperation):  # refused: an upload fails, named
            return name

    def check_name(self, name: str) -> None:
        super().check_name(name)
        self.blob_name(name)  # too long, too deep: a ValueError, as an upload

    def read(self, name: str) -> bytes | None:
        """One download of the stored bytes (not decompressed)."""
        found = self.fetch(name)
        return None if found is None else found[0]

    def digest(self, name: str) -> Digest | None:
        """MD5 and size of the stored bytes (not decompressed), streamed."""
        from azure.core.exceptions import ResourceNotFoundError

        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            downloader = self.azure.client.download_blob(
                self.blob_name(name), decompress=False, timeout=self.azure.timeout
            )
            for chunk in downloader.chunks():
                md5.update(chunk)
                size += len(chunk)
        except ResourceNotFoundError:
            return None
        return Digest(md5.hexdigest(), size)

    conditional = True  # If-None-Match: *, If-Match: ETag

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.azure.client.download_blob(
                self.blob_name(name), decompress=False, timeout=self.azure.timeout
            )
            data: bytes = downloader.readall()
        except ResourceNotFoundError:
            return None
        return data, str(downloader.properties.etag)

    def create(self, name: str, data: Payload) -> str | None:
        return self._upload(name, data, {"overwrite": False})

    def replace(self, name: str, data: Payload, version: str) -> str | None:
        from azure.core import MatchConditions

        match = MatchConditions.IfNotModified
        condition = {"overwrite": True, "etag": version, "match_condition": match}
        return self._upload(name, data, condition)

    def _upload(
        self, name: str, data: Payload, condition: dict[str, Any]
    ) -> str | None:
        """Upload ``data`` on ``condition``; its ETag, None if not met."""
        from azure.core import exceptions as failed

        blob = self.azure.client.get_blob_client(self.blob_name(name))
        try:
            answer = blob.upload_blob(data, timeout=self.azure.timeout, **condition)
        except (failed.ResourceExistsError, failed.ResourceModifiedError):
            return None
        except failed.ResourceNotFoundError:  # replace: gone; create: no container
            if "etag" not in condition:
                raise
            return None
        return str(answer["etag"])

    def remove(self, name: str, version: str) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        blob = self.azure.client.get_blob_client(self.blob_name(name))
        try:
            blob.delete_blob(
                etag=version,
                match_condition=MatchConditions.IfNotModified,
                timeout=self.azure.timeout,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    @property
    def overwrites_in_place(self) -> bool:
        """``AZURE_OVERWRITE_FILES``: else ``save`` picks a new name if taken."""
        return bool(getattr(self.azure, "overwrite_files", False))

    def delete_many(self, names: Iterable[str]) -> None:
        """Delete through blob batch requests of up to 256 blobs each.

        Azurite supports blob batch too. A blob already gone counts as
        deleted (as ``AzureStorage.delete`` treats it); any other failure is
        raised after every batch was tried, naming the blobs that remain.
        """
        from azure.core.exceptions import HttpResponseError

        # Listed names: the blob is exactly the prefix and the name (blob_name
        # would strip a dot that ends it, and delete another blob).
        name_of = {self.prefix + name: name for name in names}
        blobs = list(name_of)
        failed: list[tuple[str, str]] = []
        first: tuple[int | None, str | None] | None = None
        for start in range(0, len(blobs), self.delete_batch):
            batch = blobs[start : start + self.delete_batch]
            try:
                parts = list(
                    self.azure.client.delete_blobs(
                        *batch, raise_on_any_failure=False, timeout=self.azure.timeout
                    )
                )
            except HttpResponseError as error:
                reason = f"{error.status_code} {first_line(error)}"
                failed.extend((blob, reason) for blob in batch)
                first = first or (error.status_code, getattr(error, "error_code", None))
                continue
            if len(parts) != len(batch):
                reason = f"the batch answered {len(parts)} of {len(batch)}"
                failed.extend((blob, reason) for blob in batch)
                continue
            for blob, part in zip(batch, parts, strict=True):
                if part.status_code not in (200, 202, 204, 404):
                    failed.append((blob, _reason(part)))
                    code = part.headers.get("x-ms-error-code")
                    first = first or (part.status_code, code)
        if failed:
            status, code = first or (None, None)
            named = [(name_of[blob], why) for blob, why in failed]
            raise DeleteFailed(named, status, code)

    @contextmanager
    def prepared_for_threads(self, workers: int) -> Iterator[None]:
        if workers <= 1:
            yield
            return
        azure = self.azure
        client = azure.client  # one client for all workers, built before them
        saved_max_conn = azure.upload_max_conn
        azure.upload_max_conn = 1
        restore_pool = _widen_pool(client, workers)
        try:
            yield
        finally:
            azure.upload_max_conn = saved_max_conn
            restore_pool()

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Count HTTP requests by Blob service operation (PutBlob, ListBlobs, ...).

        A response hook on the client's requests session sees every request
        sent, retries included. A client on another transport is not counted.
        """
        session = client_session(self.azure.client)
        if session is None:
            yield
            return

        def hook(response: Any, *args: Any, **kwargs: Any) -> None:
            count(operation(response.request.method, response.request.url))

        hooks: list[Any] = session.hooks.setdefault("response", [])
        hooks.append(hook)
        try:
            yield
        finally:
            hooks.remove(hook)


def operation(method: str, url: str) -> str:
    """The Blob service operation an HTTP request is, named as in the REST API."""
    query = parse_qs(urlsplit(url).query)
    comp = query.get("comp", [""])[0]
    if query.get("restype", [""])[0] == "container":
        if comp == "list":
            return "ListBlobs"
        if comp == "batch":
            return "BlobBatch"
        if not comp:
            named = {"PUT": "CreateContainer", "DELETE": "DeleteContainer"}
            return named.get(method, "GetContainerProperties")
        return f"{method} container comp={comp}"
    if comp == "block":
        return "PutBlock"
    if comp == "blocklist":
        return "PutBlockList"
    if comp:
        return f"{method} comp={comp}"
    plain = {
        "PUT": "PutBlob",
        "GET": "GetBlob",
        "HEAD": "GetBlobProperties",
        "DELETE": "DeleteBlob",
    }
    return plain.get(method, method)


def _etag(blob: Any) -> str:
    """Content-MD5 as lowercase hex when the blob has one, else its ETag."""
    settings = getattr(blob, "content_settings", None)
    md5 = getattr(settings, "content_md5", None)
    if isinstance(md5, (bytes, bytearray)) and len(md5) == 16:
        return bytes(md5).hex()
    return str(blob.etag or "").strip('"')


def _is_directory(blob: Any) -> bool:
    """A directory entry of an account with a hierarchical namespace."""
    metadata = getattr(blob, "metadata", None) or {}
    return str(metadata.get("hdi_isfolder", "")).lower() == "true"


def _reason(part: Any) -> str:
    """Status and error code of one sub-response of a blob batch."""
    code = part.headers.get("x-ms-error-code") or part.reason or ""
    return f"{part.status_code} {code}".strip()


def _transport(client: Any) -> Any:
    """The client's own HTTP transport, under the SDK's wrappers."""
    pipeline = getattr(client, "_pipeline", None)
    transport: Any = getattr(pipeline, "_transport", None)
    while hasattr(transport, "_transport"):  # TransportWrapper
        transport = transport._transport
    return transport


def client_session(client: Any) -> Any:
    """The requests session the client sends through, or None.

    That is the SDK's default transport (azure-core's RequestsTransport); a
    client given another transport has none.
    """
    import requests

    transport = _transport(client)
    if transport is None or not hasattr(transport, "session"):
        return None
    if transport.session is None:
        transport.open()  # creates the session it would create on first use
    session = transport.session
    return session if isinstance(session, requests.Session) else None


def _widen_pool(client: Any, workers: int) -> Callable[[], None]:
    """Let the session keep ``workers`` connections to the account; undo later."""
    from requests.adapters import HTTPAdapter

    session = client_session(client)
    adapter = session.get_adapter(client.url) if session is not None else None
    if not isinstance(adapter, HTTPAdapter):
        return lambda: None
    saved = (adapter._pool_connections, adapter._pool_maxsize, adapter._pool_block)
    if saved[1] >= workers:
        return lambda: None

    def resize(connections: int, maxsize: int, block: bool) -> None:
        adapter.poolmanager.clear()
        adapter.init_poolmanager(connections, maxsize, block=block)

    resize(saved[0], workers, saved[2])
    return lambda: resize(*saved)


BACKEND = AzureBackend
