"""Prepare a destination storage for use from many threads at once.

Generic storages are used as they are. Known backends get their client tuned
for the run and restored afterwards:

- django-storages ``S3Storage`` shares one botocore client (the cached
  ``bucket``) between threads, and botocore keeps 10 connections per client by
  default: the pool is widened to the worker count. It also builds a boto3
  session and client per thread (about a tenth of a second of CPU each, under
  the GIL): the workers share one client instead, as botocore clients are
  thread-safe. Each ``upload_fileobj`` would also start its own s3transfer
  thread pool: uploads run on our workers instead (``use_threads=False``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.files.storage import Storage


def s3_storage_class() -> type[Any] | None:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages or boto3 not installed
        return None
    return S3Storage  # type: ignore[no-any-return]


def is_s3(storage: Storage) -> bool:
    cls = s3_storage_class()
    return cls is not None and isinstance(storage, cls)


@contextmanager
def prepared_for_threads(storage: Storage, workers: int) -> Iterator[None]:
    """Tune ``storage``'s client for ``workers`` threads while the block runs."""
    if workers <= 1 or not is_s3(storage):
        yield
        return
    s3: Any = storage
    saved = (s3.client_config, s3.transfer_config)
    pool = max(workers, s3.client_config.max_pool_connections or 10)
    s3.client_config = s3.client_config.merge(_botocore_config(pool))
    s3.transfer_config = copy.copy(s3.transfer_config)
    s3.transfer_config.use_threads = False
    _drop_clients(s3, shared=True)
    s3.bucket  # noqa: B018 - build the one shared client before the workers start
    try:
        yield
    finally:
        s3.client_config, s3.transfer_config = saved
        _drop_clients(s3)


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
