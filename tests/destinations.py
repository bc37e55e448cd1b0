"""The destinations every shared scenario runs against, behind one interface.

Local disk (a real temporary directory), S3 (moto's server), Azure Blob
(Azurite) and Google Cloud Storage (the emulator), each over its real
protocol. A destination names files from the root of its bucket, container
or directory, so the storage's ``location`` shows as a prefix. Requests are
counted at the servers (local disk makes none); what a run wrote is read at
the server too (local disk: the files whose inode, size or mtime changed).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .buckets import Bucket, keys_of, kinds
from .conftest import RECORD
from .servers.gcs import kind

#: Each storage's class path, and its manifest variant, per destination.
BACKENDS = {
    "local": "django.contrib.staticfiles.storage.StaticFilesStorage",
    "s3": "storages.backends.s3.S3Storage",
    "azure": "storages.backends.azure_storage.AzureStorage",
    "gcs": "storages.backends.gcloud.GoogleCloudStorage",
}
MANIFEST_BACKENDS = {
    "local": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
    "s3": "storages.backends.s3.S3ManifestStaticStorage",
    "azure": "tests.azure_storages.AzureManifestStorage",
    "gcs": "tests.gcs_storages.GCSManifestStorage",
}


@dataclass(frozen=True)
class Requests:
    """The requests a run makes, by the kinds its server counts."""

    #: Reading the sync record, and one listing page.
    read: dict[str, int]
    #: Per file written.
    write: dict[str, int]
    #: Writing the sync record (on the condition that it is as read).
    record: dict[str, int]
    #: Listing again after writes, where an upload's answer does not say
    #: what landed (Azure).
    relist: dict[str, int]
    #: One batch of deletions.
    batch: dict[str, int]
    #: Of ``read``, the listing page alone.
    listing: dict[str, int]
    #: Taking the lease and giving it back (every run but a dry run).
    lease: dict[str, int]


#: The expected requests, per destination (local disk makes none).
REQUESTS = {
    "s3": Requests(
        read={"GET": 1, "LIST": 1},
        write={"PUT": 1},
        record={"PUT": 1},
        relist={},
        batch={"BATCH_DELETE": 1},
        listing={"LIST": 1},
        lease={"PUT": 1, "DELETE": 1},
    ),
    "azure": Requests(
        read={"GetBlob": 1, "ListBlobs": 1},
        write={"PutBlob": 1},
        record={"PutBlob": 1},
        relist={"ListBlobs": 1},
        batch={"BlobBatch": 1},
        listing={"ListBlobs": 1},
        lease={"PutBlob": 1, "DeleteBlob": 1},
    ),
    "gcs": Requests(
        # django-storages looks a blob up (META) before each upload.
        read={"DOWNLOAD": 1, "LIST": 1},
        write={"META": 1, "UPLOAD": 1},
        record={"UPLOAD": 1},
        relist={},
        batch={"BATCH": 1},
        listing={"LIST": 1},
        lease={"UPLOAD": 1, "DELETE": 1},
    ),
}


class Destination:
    """One empty bucket, container or directory, and the settings for it."""

    kind = ""

    def __init__(self, location: str = "") -> None:
        self.location = location
        self.class_path = BACKENDS[self.kind]

    # Settings ---------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        return {}

    def use(
        self, settings: Any, backend: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Point ``STORAGES["staticfiles"]`` here; return that entry."""
        if self.location:
            options.setdefault("location", self.location)
        storage = {
            "BACKEND": backend or self.class_path,
            "OPTIONS": {**self.options(), **options},
        }
        settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}
        return storage

    def use_manifest(self, settings: Any, **options: Any) -> dict[str, Any]:
        return self.use(settings, MANIFEST_BACKENDS[self.kind], **options)

    # What is there ----------------------------------------------------------

    def key(self, name: str) -> str:
        """The name a file the storage saves as ``name`` has here."""
        return f"{self.location}/{name}" if self.location else name

    @property
    def record_key(self) -> str:
        return self.key(RECORD)

    @property
    def lease_key(self) -> str:
        return self.key(RECORD + ".lease")

    def names(self) -> list[str]:
        raise NotImplementedError

    def get(self, name: str) -> bytes:
        raise NotImplementedError

    def put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def contents(self, record: bool = False) -> dict[str, bytes]:
        """Every file's bytes, by name; the sync record only if ``record``."""
        return {
            name: self.get(name)
            for name in self.names()
            if record or name != self.record_key
        }

    # What a run did ---------------------------------------------------------

    def start(self) -> None:
        """Forget what was asked and written so far."""

    def requests(self) -> Counter[str]:
        return Counter()

    def written(self) -> list[str]:
        """What the last run wrote (the sync record included), by name; the
        lease, written and deleted by every run, is left out."""
        return [name for name in self.writes() if name != self.lease_key]

    def writes(self) -> list[str]:
        raise NotImplementedError

    def expected(
        self, writes: int = 0, batches: int = 0, dry_run: bool = False
    ) -> Counter[str]:
        """The requests a run that reads, writes ``writes`` files (the sync
        record last among them) and deletes in ``batches`` makes (none on local
        disk): with the lease taken and given back, unless a dry run. After
        deleting, the record is written again, without them."""
        table = REQUESTS.get(self.kind)
        found: Counter[str] = Counter()
        if table is None:
            return found
        found.update(table.read)
        if not dry_run:
            found.update(table.lease)
        for _ in range(writes - 1):
            found.update(table.write)
        if writes:
            found.update(table.record)
            found.update(table.relist)
        for _ in range(batches):
            found.update(table.batch)
        if batches:
            found.update(table.record)
        return found


class LocalDestination(Destination):
    """A temporary directory; STATIC_ROOT is its ``location`` inside it."""

    kind = "local"

    def __init__(self, root: Path, location: str = "") -> None:
        super().__init__(location)
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.before: dict[str, tuple[int, int, int]] = {}

    def use(
        self, settings: Any, backend: str | None = None, **options: Any
    ) -> dict[str, Any]:
        location = options.pop("location", self.location)
        settings.STATIC_ROOT = str(self.root / location if location else self.root)
        storage = {"BACKEND": backend or self.class_path, "OPTIONS": options}
        settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}
        return storage

    def names(self) -> list[str]:
        found = []
        for folder, _dirs, files in os.walk(self.root):
            for file in files:
                found.append((Path(folder) / file).relative_to(self.root).as_posix())
        return sorted(found)

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, name: str) -> None:
        (self.root / name).unlink()

    def stats(self) -> dict[str, tuple[int, int, int]]:
        found = {}
        for name in self.names():
            stat = (self.root / name).stat()
            found[name] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return found

    def start(self) -> None:
        self.before = self.stats()

    def writes(self) -> list[str]:
        now = self.stats()
        return sorted(name for name in now if now[name] != self.before.get(name))


class S3Destination(Destination):
    kind = "s3"

    def __init__(self, server: Any, location: str = "") -> None:
        super().__init__(location)
        self.bucket = Bucket(server)

    def options(self) -> dict[str, Any]:
        return dict(self.bucket.storage()["OPTIONS"])

    def names(self) -> list[str]:
        return sorted(self.bucket.contents(record=True))

    def get(self, name: str) -> bytes:
        return self.bucket.get(name)

    def put(self, name: str, data: bytes) -> None:
        self.bucket.put(name, data)

    def delete(self, name: str) -> None:
        self.bucket.delete(name)

    def start(self) -> None:
        self.bucket.server.reset_requests()

    def requests(self) -> Counter[str]:
        return kinds(self.bucket.server.requests())

    def writes(self) -> list[str]:
        return keys_of(self.bucket.server.requests(), "PUT", self.bucket.name)


class AzureDestination(Destination):
    kind = "azure"

    def __init__(self, server: Any, location: str = "") -> None:
        from azure.storage.blob import BlobServiceClient

        super().__init__(location)
        self.server = server
        self.name = f"static-{uuid.uuid4().hex[:12]}"
        service = BlobServiceClient.from_connection_string(server.connection_string)
        self.client = service.get_container_client(self.name)
        self.client.create_container()

    def options(self) -> dict[str, Any]:
        return {
            "connection_string": self.server.connection_string,
            "azure_container": self.name,
            "overwrite_files": True,
        }

    def key(self, name: str) -> str:
        # AzureStorage strips dots from both ends of a blob's full name.
        return super().key(name).strip("./")

    def names(self) -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs())

    def get(self, name: str) -> bytes:
        return bytes(self.client.download_blob(name).readall())

    def put(self, name: str, data: bytes) -> None:
        self.client.upload_blob(name, data, overwrite=True)

    def delete(self, name: str) -> None:
        self.client.delete_blob(name)

    def start(self) -> None:
        self.server.reset_requests()

    def requests(self) -> Counter[str]:
        return Counter(request.kind for request in self.server.requests())

    def writes(self) -> list[str]:
        return sorted(
            blob
            for request in self.server.requests()
            if request.kind == "PutBlob"
            and (blob := request.blob(self.name)) is not None
        )


class GCSDestination(Destination):
    kind = "gcs"

    def __init__(self, server: Any, location: str = "") -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[import-untyped]

        super().__init__(location)
        self.server = server
        self.name = f"static-{uuid.uuid4().hex[:12]}"
        self.credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self.client = storage.Client(
            project=server.project, credentials=self.credentials
        )
        self.bucket = self.client.create_bucket(self.name)

    def options(self) -> dict[str, Any]:
        return {
            "bucket_name": self.name,
            "project_id": self.server.project,
            "credentials": self.credentials,
            "querystring_auth": False,
        }

    def names(self) -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(self.name))

    def get(self, name: str) -> bytes:
        return bytes(self.bucket.blob(name).download_as_bytes(raw_download=True))

    def put(self, name: str, data: bytes) -> None:
        self.bucket.blob(name).upload_from_string(data)

    def delete(self, name: str) -> None:
        self.bucket.blob(name).delete()

    def start(self) -> None:
        self.server.reset_requests()

    def requests(self) -> Counter[str]:
        return Counter(kind(line) for line in self.server.requests())

    def writes(self) -> list[str]:
        return sorted(self.server.uploaded())
