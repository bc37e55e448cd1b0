"""Fresh buckets on the test moto server, and the storage settings for them."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from typing import Any
from urllib.parse import unquote

import boto3

from .servers.s3 import S3Server

S3 = "storages.backends.s3.S3Storage"
S3_MANIFEST = "storages.backends.s3.S3ManifestStaticStorage"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}
RECORD = ".collectstatic-plus.json"


class Bucket:
    """A fresh bucket on the moto server and the settings that point at it."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.name = f"static-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=self.name)

    def storage(self, backend: str = S3, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": backend,
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.server.endpoint_url,
                "region_name": "us-east-1",
                "querystring_auth": False,
                **CREDENTIALS,
                **options,
            },
        }

    def contents(self, record: bool = False, gunzip: bool = False) -> dict[str, bytes]:
        """Every object's bytes; the sync record only if ``record``."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name
        ):
            for item in page.get("Contents", []):
                if not record and item["Key"].endswith(RECORD):
                    continue
                body = self.client.get_object(Bucket=self.name, Key=item["Key"])
                data = body["Body"].read()
                if gunzip and body.get("ContentEncoding") == "gzip":
                    data = gzip.decompress(data)
                found[item["Key"]] = data
        return found

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def get(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.name, Key=key)
        return bytes(response["Body"].read())

    def etags(self) -> dict[str, str]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name
        ):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(RECORD):
                    found[item["Key"]] = item["ETag"].strip('"')
        return found


def kinds(lines: list[str]) -> Counter[str]:
    """Requests by kind: LIST (ListObjectsV2), BATCH_DELETE, else the method."""
    found: Counter[str] = Counter()
    for line in lines:
        method, target = line.split(" ", 1)
        if method == "GET" and "list-type=2" in target:
            found["LIST"] += 1
        elif method == "POST" and target.endswith("?delete"):
            found["BATCH_DELETE"] += 1
        else:
            found[method] += 1
    return found


def keys_of(lines: list[str], method: str, bucket: str) -> list[str]:
    """Object keys that requests of one method touched, sorted; not the
    lease, which every run writes and deletes (test_lease.py is about it)."""
    prefix = f"{method} /{bucket}/"
    keys = (
        unquote(line[len(prefix) :].split("?")[0])
        for line in lines
        if line.startswith(prefix)
    )
    return sorted(key for key in keys if not key.endswith(".lease"))
