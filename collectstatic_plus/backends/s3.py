"""django-storages' S3Storage and its subclasses (S3-compatible services too).

Private members of django-storages used here, checked against 1.14.0-1.14.6
(the versions setup.cfg allows; the test matrix runs the oldest and newest):
``S3Storage._normalize_name`` (the key a name is stored under),
``S3Storage._bucket`` and ``S3Storage._connections`` (its cached bucket and
per-thread connections, replaced for the run so that threads share one client).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.files.storage import Storage

from ..digest import Digest, digest_stream
from .base import Backend, DeleteFailed, Listing, Payload, Readable, Remote

#: Operations whose answer carries the new object's ETag.
UPLOADS = {"PutObject", "CompleteMultipartUpload"}

#: A condition not met (412), or met by another writer at the same moment
#: (409 ConditionalRequestConflict); NoSuchKey: nothing there to match (not
#: NoSuchBucket, also a 404: that is no condition).
CONDITION_FAILED = (409, 412)

#: Keys in one S3 DeleteObjects request (the service's limit).
S3_DELETE_BATCH = 1000


class S3Backend(Backend):
    """django-storages S3Storage: ListObjectsV2 pages, one client for all threads.

    For threads, all workers share one boto3 client (django-storages would
    build a session and client per thread, about a tenth of a second of CPU
    each under the GIL; botocore clients are thread-safe), the connection pool
    is widened to the worker count (botocore keeps 10 by default), and uploads
    run on our workers instead of an s3transfer thread pool per file.
    """

    utf8_names = True

    transient_names = frozenset(
        {
            "EndpointConnectionError",
            "ConnectionClosedError",
            "ReadTimeoutError",
            "ConnectTimeoutError",
            "ProtocolError",
            "IncompleteReadError",
            "ResponseStreamingError",
        }
    )
    permanent_names = frozenset({"NoCredentialsError", "PartialCredentialsError"})
    unreachable_names = frozenset(
        {
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ConnectionClosedError",
            "ReadTimeoutError",
            "SSLError",
        }
    )
    transient_codes = frozenset(
        {"RequestTimeout", "InternalError", "ServiceUnavailable", "SlowDown"}
    )
    throttling_codes = frozenset(
        {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
    )
    permanent_codes = frozenset(
        {
            "AccessDenied",
            "AllAccessDisabled",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "NoSuchBucket",
            "AccountProblem",
        }
    )

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        #: ETags that uploads answered with, by name, within :meth:`saving`
        #: (each until :meth:`saved` asks for it).
        self.uploaded: dict[str, str] = {}
        self.remembering = False
        self._lock = threading.Lock()

    @staticmethod
    def handles(storage: Storage) -> bool:
        from storages.backends.s3 import (
            S3Storage,  # loaded already (see backends/__init__.py)
        )

        return isinstance(storage, S3Storage)

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

    def ready(self) -> None:
        self.client  # noqa: B018 (S3Storage builds it on first use)
        self.check_location(self.s3._normalize_name)

    def listed_name(self, name: str) -> str:
        """django-storages stores ``a\\b`` as ``a/b`` (``clean_name``)."""
        return name.replace("\\", "/")

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

    @contextmanager
    def stream(self, name: str) -> Iterator[Readable | None]:
        """The object's body as it downloads (one GET, as ``read``)."""
        try:
            response = self.client.get_object(
                Bucket=self.s3.bucket_name, Key=self.s3._normalize_name(name)
            )
        except Exception as error:
            if self.describe(error)[0] != 404:
                raise
            response = None
        if response is None:
            yield None
            return
        body = response["Body"]
        try:
            if response.get("ContentEncoding") == "gzip" and self.gzips(name):
                yield gzip.GzipFile(fileobj=body, mode="rb")
            else:
                yield body
        finally:
            body.close()

    def gzips(self, name: str) -> bool:
        """Whether the storage compresses ``name`` as it saves it (as its
        ``_save`` decides: private ``_get_write_parameters``); a ``.gz`` file
        goes as it is, though sent with Content-Encoding: gzip."""
        params = self.s3._get_write_parameters(name)
        if not self.s3.gzip or "ContentEncoding" in params:
            return False
        return params["ContentType"] in self.s3.gzip_content_types

    def digest(self, name: str) -> Digest | None:
        """MD5 and size of the object's content, hashed as it downloads."""
        with self.stream(name) as stream:
            return None if stream is None else digest_stream(stream)

    def delete_many(self, names: Iterable[str]) -> None:
        """DeleteObjects requests of up to 1,000 keys; the keys it could
        not delete are raised after every batch was tried (DeleteFailed)."""
        name_of = {self.s3._normalize_name(name): name for name in names}
        keys = list(name_of)
        errors: list[dict[str, str]] = []
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = keys[start : start + S3_DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.s3.bucket_name,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors += response.get("Errors", [])
        if errors:
            failed = []
            for error in errors:
                key = error.get("Key", "?")
                why = f"{error.get('Code')}: {error.get('Message')}"
                failed.append((name_of.get(key, key), why))
            raise DeleteFailed(failed, error_code=errors[0].get("Code"))

    # The lease: S3's conditional writes (If-None-Match: *, If-Match: ETag),
    # with the storage's own object parameters (ACL, encryption, ...).
    conditional = True

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(
                Bucket=self.s3.bucket_name, Key=self.s3._normalize_name(name)
            )
        except Exception as error:
            if self.describe(error)[0] == 404:
                return None
            raise
        with contextlib.closing(response["Body"]) as body:
            return body.read(), str(response["ETag"]).strip('"')

    def create(self, name: str, data: Payload) -> str | None:
        return self._put(name, data, IfNoneMatch="*")

    def replace(self, name: str, data: Payload, version: str) -> str | None:
        return self._put(name, data, IfMatch=f'"{version}"')

    def remove(self, name: str, version: str) -> bool:
        try:
            self.client.delete_object(
                Bucket=self.s3.bucket_name,
                Key=self.s3._normalize_name(name),
                IfMatch=f'"{version}"',
            )
        except Exception as error:
            if self.condition_failed(error):
                return False
            raise
        return True

    def condition_failed(self, error: Exception) -> bool:
        status, code = self.describe(error)
        return status in CONDITION_FAILED or code == "NoSuchKey"

    def _put(self, name: str, data: Payload, **condition: str) -> str | None:
        """Upload ``data`` on ``condition``; its ETag, None if not met."""
        params = self.s3._get_write_parameters(name)
        params.pop("ContentEncoding", None)  # ``data`` is not compressed
        try:
            response = self.client.put_object(
                Bucket=self.s3.bucket_name,
                Key=self.s3._normalize_name(name),
                Body=data,
                **params,
                **condition,
            )
        except Exception as error:
            if self.condition_failed(error):
                return None
            raise
        return str(response["ETag"]).strip('"')

    @contextmanager
    def counting(self, count: Callable[[str], None]) -> Iterator[None]:
        """Count API calls (PutObject, ListObjectsV2, ...) on the client, and
        remember the ETag each upload answered with (see :meth:`saved`)."""
        events = self.client.meta.events
        unique_id = f"collectstatic-plus-{id(count)}"
        prefix = self.prefix

        def remember_key(params: Any, context: Any, **kwargs: Any) -> None:
            context["collectstatic_plus_key"] = params.get("Key")

        def after_call(model: Any, parsed: Any, context: Any, **kwargs: Any) -> None:
            count(model.name)
            key = context.get("collectstatic_plus_key")
            etag = parsed.get("ETag") if isinstance(parsed, dict) else None
            remember = self.remembering and model.name in UPLOADS
            if remember and key and etag and key.startswith(prefix):
                with self._lock:
                    self.uploaded[key[len(prefix) :]] = etag.strip('"')

        # unique_id is per emitter, not per event: one for each handler.
        events.register(
            "provide-client-params.s3", remember_key, unique_id=unique_id + "-key"
        )
        events.register("after-call.s3", after_call, unique_id=unique_id)
        try:
            yield
        finally:
            events.unregister("provide-client-params.s3", unique_id=unique_id + "-key")
            events.unregister("after-call.s3", unique_id=unique_id)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Remember upload ETags only within (the copies, the manifest), not
        for, say, the hashed copies post-processing uploads: nobody asks."""
        self.remembering = True
        try:
            yield
        finally:
            self.remembering = False
            with self._lock:
                self.uploaded.clear()

    def saved(self, name: str, content: Digest) -> Remote | None:
        """The object as a listing would show it, from the ETag its upload
        answered with (None if that was not seen: the caller lists again)."""
        with self._lock:
            uploaded = self.uploaded.pop(name, None)
        if uploaded is None:
            return None
        return Remote(content.size, uploaded)

    def describe(self, error: BaseException) -> tuple[int | None, str | None]:
        """botocore's ClientError carries both in its ``response``."""
        response = getattr(error, "response", None)
        if not isinstance(response, dict):
            return super().describe(error)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code")
        return (int(status) if status else None), (str(code) if code else None)

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
        # Build the one shared client before workers start.
        s3._bucket = _ReusedObjectClass(s3.bucket)
        try:
            yield
        finally:
            s3.client_config, s3.transfer_config = saved
            _drop_clients(s3)


def _botocore_config(max_pool_connections: int) -> Any:
    from botocore.config import Config

    return Config(max_pool_connections=max_pool_connections)


class _ReusedObjectClass:
    """The storage's bucket, except that ``Object(key)`` reuses one class.

    boto3 builds a new resource class from its JSON model on every
    ``bucket.Object(key)``, which django-storages' ``_save`` calls once per
    upload: about a millisecond of CPU each, a fifth of a small upload's client
    time. The instances are the same (same class, identifiers and client);
    everything else is the bucket's own.
    """

    def __init__(self, bucket: Any) -> None:
        self._bucket = bucket
        self._object_class = type(bucket.Object("collectstatic-plus-probe"))

    def Object(self, key: str) -> Any:  # boto3's name
        client = self._bucket.meta.client
        return self._object_class(self._bucket.name, key, client=client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bucket, name)


class _SharedConnection:
    """Stands in for django-storages' per-thread cache: one client for all."""

    connection: Any = None


def _drop_clients(s3: Any, shared: bool = False) -> None:
    """Forget cached clients so the next use builds them from the current config."""
    s3._bucket = None
    s3._connections = _SharedConnection() if shared else threading.local()


BACKEND = S3Backend
