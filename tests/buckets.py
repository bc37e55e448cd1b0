"""Fresh buckets on the test moto server, and the storage settings for them."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from .servers.s3 import S3Server

S3 = "storages.backends.s3.S3Storage"
S3_MANIFEST = "storages.backends.s3.S3ManifestStaticStorage"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


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

    def contents(self) -> dict[str, bytes]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name
        ):
            for item in page.get("Contents", []):
                body = self.client.get_object(Bucket=self.name, Key=item["Key"])
                found[item["Key"]] = body["Body"].read()
        return found

    def etags(self) -> dict[str, str]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name
        ):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["ETag"].strip('"')
        return found
