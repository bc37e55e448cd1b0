"""Google Cloud Storage: django-storages' GoogleCloudStorage and its subclasses.

Private members used here, checked against django-storages 1.14.0-1.14.6 and
google-cloud-storage 2.x-3.x: ``GoogleCloudStorage._normalize_name`` (the blob
a name is stored as); the client's ``_http`` (its requests session, to count
and widen its connections); a batch's ``_responses`` (each call's outcome,
read where the client offers no public way); requests' ``HTTPAdapter._pool_*``.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.core.files.storage import Storage

from ..digest import Digest
from ..retry import first_line
from .base import Backend, DeleteFailed, Listing, Payload, Remote
from .gcs_http import HashingSink, request_kind, widen_pools

#: Calls in one batch request (the service's limit; the client allows more).
GCS_DELETE_BATCH = 100
#: Fields a listing asks for: what a ``Remote`` needs and the next page.
LIST_FIELDS = "items(name,size,md5Hash,generation,etag),nextPageToken"


#: A blob a delete left, why, and the HTTP status if there was one.
Failed = tuple[str, str, "int | None"]


class GCSBackend(Backend):
    """django-storages GoogleCloudStorage: ``objects.list`` pages, batched deletes.

    A listing gives each blob's size and MD5 (1,000 blobs per request); the
    sync record is read with one download, no metadata request first. Stale
    blobs are deleted 100 per batch request. For threads, the storage's one
    client (google-cloud-storage clients are thread-safe) is built before the
    workers start, and the connection pool of its HTTP session is widened to
    the worker count (requests keeps 10 per host).
    """

    utf8_names = True

    # requests' ConnectionError and Timeout are not the built-in ones.
    transient_names = frozenset({"ConnectionError", "Timeout", "ChunkedEncodingError"})
    #: (NotFound reaches a retry only for a missing bucket: a missing object
    #: is an answer wherever the backend asks for one.)
    permanent_names = frozenset({"DefaultCredentialsError", "RefreshError", "NotFound"})
    unreachable_names = frozenset(
        {"ConnectionError", "Timeout", "SSLError", "TransportError"}
    )
    #: google-api-core retries a refused connection for 120 s, then raises a
    #: RetryError whose ``cause`` is the last failure.
    sdk_retries_connections = True

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        #: What uploads answered, by blob name, within :meth:`saving` (each
        #: until :meth:`saved` asks for it).
        self.uploaded: dict[str, Remote] = {}
        self.remembering = False
        self._lock = threading.Lock()

    @staticmethod
    def handles(storage: Storage) -> bool:
        from storages.backends.gcloud import (
            GoogleCloudStorage,  # loaded already (see backends/__init__.py)
        )

        return isinstance(storage, GoogleCloudStorage)

    @property
    def gcs(self) -> Any:
        return self.storage

    def ready(self) -> None:
        self.gcs.client  # noqa: B018 (built on first use: no credentials fails here)
        self.check_location(self.blob_name)

    @property
    def prefix(self) -> str:
        location = str(self.gcs.location or "").strip("/")
        return location + "/" if location else ""

    @property
    def endpoint(self) -> str:
        host = os.environ.get("STORAGE_EMULATOR_HOST", "storage.googleapis.com")
        return f"{host}, bucket {self.gcs.bucket_name}"

    def blob_name(self, name: str) -> str:
        from storages.utils import clean_name

        return str(self.gcs._normalize_name(clean_name(name)))

    @property
    def overwrites_in_place(self) -> bool:
        """GS_FILE_OVERWRITE (default True): ``save`` replaces the blob."""
        return bool(getattr(self.gcs, "file_overwrite", True))

    def listed_name(self, name: str) -> str:
        """django-storages stores ``a\\b`` as ``a/b`` (``clean_name``)."""
        return name.replace("\\", "/")

    def listing(self) -> Listing | None:
        found: Listing = {}
        prefix = self.prefix
        blobs = self.gcs.bucket.list_blobs(prefix=prefix, fields=LIST_FIELDS)
        for blob in blobs:
            name = blob.name[len(prefix) :]
            if name and not name.endswith("/"):
                found[name] = Remote(int(blob.size or 0), _etag(blob))
        return found

    def read(self, name: str) -> bytes | None:
        """One download request; no metadata request before it."""
        from google.api_core.exceptions import NotFound

        blob = self.gcs.bucket.blob(self.blob_name(name))
        try:
            data: bytes = blob.download_as_bytes()
        except NotFound:
            return None
        return data

    def digest(self, name: str) -> Digest | None:
        """One download request, hashed as it streams in."""
        from google.api_core.exceptions import NotFound

        blob = self.gcs.bucket.blob(self.blob_name(name))
        sink = HashingSink()
        try:
            blob.download_to_file(sink)
        except NotFound:
            return None
        return Digest(sink.md5.hexdigest(), sink.size)

    # The lease: preconditions on the blob's generation (0: none exists).
    conditional = True

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        from google.api_core.exceptions import NotFound

        blob = self.gcs.bucket.blob(self.blob_name(name))
        try:  # the download's headers say its generation
            data: bytes = blob.download_as_bytes()
        except NotFound:
            return None
        if blob.generation is None:  # a server that does not say: ask, and
            blob.reload()  # read again on that generation
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        return data, str(blob.generation)

    def create(self, name: str, data: Payload) -> str | None:
        return self._upload(name, data, 0)

    def replace(self, name: str, data: Payload, version: str) -> str | None:
        return self._upload(name, data, int(version))

    def remove(self, name: str, version: str) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.gcs.bucket.blob(self.blob_name(name))
        try:
            blob.delete(if_generation_match=int(version))
        except (NotFound, PreconditionFailed):
            return False
        return True

    def _upload(self, name: str, data: Payload, generation: int) -> str | None:
        """Upload ``data`` if the blob is at ``generation``; its new one."""
        from google.api_core.exceptions import PreconditionFailed

        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        blob = self.gcs.bucket.blob(self.blob_name(name))
        # As the storage's _save: its object parameters and ACL (no gzip).
        params = self.gcs.get_object_parameters(self.blob_name(name))
        acl = params.pop("acl", self.gcs.default_acl)
        content_type = params.pop("content_type", "application/json")
        params.pop("content_encoding", None)
        for prop, value in params.items():
            setattr(blob, prop, value)
        try:
            blob.upload_from_file(  # with its size: one request, not two
                stream,
                size=size,
                content_type=content_type,
                predefined_acl=acl,
                if_generation_match=generation,
            )
        except PreconditionFailed:  # (a missing bucket is NotFound: raised)
            return None
        return str(blob.generation)

    def delete_many(self, names: Iterable[str]) -> None:
        """Batch requests of 100 deletes; a blob already gone is no error.

        Raises DeleteFailed naming the blobs that could not be deleted.
        """
        name_of = {self.blob_name(name): name for name in names}
        blobs = list(name_of)
        failed: list[Failed] = []
        for start in range(0, len(blobs), GCS_DELETE_BATCH):
            failed += self._delete_batch(blobs[start : start + GCS_DELETE_BATCH])
        if failed:
            named = [(name_of[blob], why) for blob, why, _status in failed]
            raise DeleteFailed(named, failed[0][2])  # (a 503 in it is retried)

    def _delete_batch(self, blobs: list[str]) -> list[Failed]:
        """Delete ``blobs`` in one batch request; the (blob, reason, HTTP
        status) that failed."""
        bucket = self.gcs.bucket
        try:
            batch = self.gcs.client.batch(raise_exception=False)
        except TypeError:  # google-cloud-storage < 2.12: no per-call outcome
            return self._delete_each(blobs)
        try:
            with batch:
                for blob in blobs:
                    bucket.delete_blob(blob)
        except ValueError:
            # An answer the client cannot parse ("Bad response: not
            # multi-part" from fake-gcs-server, which has no batches): one
            # request per blob (a blob the batch did delete is then gone).
            return self._delete_each(blobs)
        responses = getattr(batch, "_responses", None)
        if responses is None or len(responses) != len(blobs):
            return self._delete_each(blobs)
        failed: list[Failed] = []
        for blob, response in zip(blobs, responses, strict=True):
            status = int(response.status_code)
            if not (200 <= status < 300 or status == 404):
                reason = f"{status} {response.reason or ''}".strip()
                failed.append((blob, reason, status))
        return failed

    def _delete_each(self, blobs: list[str]) -> list[Failed]:
        """One request per blob, where batch outcomes cannot be read."""
        from google.api_core.exceptions import NotFound

        failed: list[Failed] = []
        for blob in blobs:
            try:
                self.gcs.bucket.delete_blob(blob)
            except NotFound:
                pass
            except Exception as error:
                failed.append((blob, first_line(error), self.describe(error)[0]))
        return failed

    def classify(self, error: BaseException) -> str:
        """A RetryError (the SDK gave up) is what its last failure was."""
        cause = getattr(error, "cause", None)
        if type(error).__name__ == "RetryError" and isinstance(cause, BaseException):
            return self.classify(cause)
        return super().classify(error)

    def describe(self, error: BaseException) -> tuple[int | None, str | None]:
        """google-api-core's errors carry the HTTP status as ``code``."""
        code = getattr(error, "code", None)
        if isinstance(code, int) and not isinstance(code, bool):
            return code, None
        return super().describe(error)

    @contextmanager
    def prepared_for_threads(self, workers: int) -> Iterator[None]:
        if workers <= 1:
            yield
            return
        # django-storages builds its client and bucket lazily, unlocked: build
        # them now so every worker shares the one client.
        self.gcs.bucket  # noqa: B018
        session = self.gcs.client._http
        adapters = getattr(session, "adapters", None)
        if adapters is None:
            yield
            return
        saved = adapters.copy()
        widened = widen_pools(session, workers)
        try:
            yield
        finally:
            session.adapters = saved
            for adapter in widened:
                adapter.close()

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Count requests (``objects.insert``, ``objects.list``, ...) on the session."""
        hooks = getattr(self.gcs.client._http, "hooks", None)
        if not isinstance(hooks, dict):
            yield
            return

        def on_response(response: Any, *args: Any, **kwargs: Any) -> None:
            request = response.request
            kind = request_kind(str(request.method), str(request.url))
            count(kind)
            if kind == "objects.insert" and self.remembering:
                self._remember(response)

        hooks.setdefault("response", []).append(on_response)
        try:
            yield
        finally:
            hooks["response"].remove(on_response)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Remember what the uploads within answered (see :meth:`saved`)."""
        self.remembering = True
        try:
            yield
        finally:
            self.remembering = False
            with self._lock:
                self.uploaded.clear()

    def saved(self, name: str, content: Digest) -> Remote | None:
        """The blob as a listing would show it, from its upload's answer:
        the stored bytes' MD5 (of the gzipped bytes, if the storage gzipped
        them); None if that was not seen (the caller lists again)."""
        with self._lock:
            return self.uploaded.pop(self.blob_name(name), None)

    def _remember(self, response: Any) -> None:
        """The object an upload's answer describes (the last request of a
        resumable one), by its blob name."""
        try:
            found = response.json() if response.ok else None
        except ValueError:  # (a resumable upload's first request: no body)
            return
        if isinstance(found, dict) and isinstance(found.get("name"), str):
            blob = _Listed(found.get("md5Hash"), found.get("generation"), None)
            with self._lock:
                self.uploaded[found["name"]] = Remote(
                    int(found.get("size") or 0), _etag(blob)
                )


class _Listed(NamedTuple):
    """What an upload's answer says of the blob, as a listing's blob."""

    md5_hash: str | None
    generation: str | None
    etag: str | None


def _etag(blob: Any) -> str | None:
    """The blob's MD5 as 32 hex digits; else what changes with its content."""
    md5 = blob.md5_hash
    if md5:
        try:
            return base64.b64decode(md5, validate=True).hex()
        except (binascii.Error, ValueError):
            pass
    # Composite objects have no MD5; a new generation is new content.
    if blob.generation is not None:
        return f"generation:{blob.generation}"
    return str(blob.etag) if blob.etag else None


BACKEND = GCSBackend
