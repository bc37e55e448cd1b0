"""The GCS backend's HTTP helpers: naming requests, hashing a download as it
streams, widening a session's connection pools (no Google import)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit


def request_kind(method: str, url: str) -> str:
    """The JSON API method a request calls, e.g. ``objects.list``."""
    parts = urlsplit(url)
    path = parts.path
    if path.endswith("/batch/storage/v1"):
        return "batch"
    if path.startswith("/upload/"):
        return "objects.insert"
    if path.startswith("/download/") or "media" in parse_qs(parts.query).get("alt", []):
        return "objects.download"
    segments = path.split("/")
    if "o" in segments:
        after = segments[segments.index("o") + 1 :]
        if not after:
            return "objects.list" if method == "GET" else f"objects.{method.lower()}"
        verbs = {"GET": "get", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}
        if len(after) == 1 and method in verbs:
            return f"objects.{verbs[method]}"
        return f"objects.{after[-1]}"  # copyTo, rewriteTo, compose, acl
    if "b" in segments and method == "GET":
        return "buckets.get"
    return method


class HashingSink:
    """A write-only stream that hashes what is downloaded into it."""

    def __init__(self) -> None:
        self.seek(0)

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        # The client rewinds when the service sends a whole gzipped blob
        # decompressed (decompressive transcoding) in answer to a range.
        if offset or whence:
            raise OSError("a hashing sink can only be rewound to its start")
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        return 0

    def tell(self) -> int:
        return self.size


def widen_pools(session: Any, workers: int) -> list[Any]:
    """Mount adapters with ``workers`` connections per host; the new adapters."""
    from requests.adapters import HTTPAdapter

    widened = []
    for prefix, adapter in list(session.adapters.items()):
        # Only requests' own adapter: a custom one (mTLS) is left as it is.
        if type(adapter) is not HTTPAdapter or adapter._pool_maxsize >= workers:
            continue
        wider = HTTPAdapter(
            pool_connections=adapter._pool_connections,
            pool_maxsize=workers,
            max_retries=adapter.max_retries,
            pool_block=adapter._pool_block,
        )
        session.mount(prefix, wider)
        widened.append(wider)
    return widened
