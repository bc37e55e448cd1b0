"""Azure Blob Storage through django-storages against Azurite over HTTP.

Azurite's blob service runs in its own process on 127.0.0.1 behind a small
proxy that counts every request before forwarding it (see
``tests/servers/azurite.py``), so the counts are exact. Operations are named
as in the Blob service REST API: ListBlobs is one page (5,000 blobs), the
sync record is one GetBlob to read and one PutBlob to write (conditional,
without asking first whether the name is free), and ``--delete`` is one
BlobBatch per 256 blobs. Every run but a dry run also takes a lease beside
the record (one conditional PutBlob) and gives it back at the end (one
DeleteBlob).
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import Storage
from django.core.management.base import CommandError

from collectstatic_plus.backends import backend_for
from collectstatic_plus.backends.azure import AzureBackend, client_session

from .azure_storages import ObservedAzureStorage
from .conftest import (
    MANIFEST_TREE,
    many,
    md5,
    read_tree,
    run_collectstatic,
    use,
    write_tree,
)
from .destinations import REQUESTS
from .servers.azurite import AzuriteServer, Request

REPO = Path(__file__).resolve().parents[1]
AZURE = "storages.backends.azure_storage.AzureStorage"
AZURE_MANIFEST = "tests.azure_storages.AzureManifestStorage"
RECORD = ".collectstatic-plus.json"
#: The blob AzureStorage writes the record to when it has no location: it
#: strips dots from both ends of a blob name.
RECORD_BLOB = "collectstatic-plus.json"
#: The lease a run takes beside the record, and the requests that costs.
LEASE_BLOB = RECORD_BLOB + ".lease"
LEASE = REQUESTS["azure"].lease


def leased(kinds: dict[str, int]) -> collections.Counter[str]:
    """A run's requests: ``kinds``, and the lease taken and given back."""
    return collections.Counter(kinds) + collections.Counter(LEASE)


pytestmark = pytest.mark.azure


class Container:
    """A fresh container on Azurite and the storage settings that point at it."""

    def __init__(self, server: AzuriteServer) -> None:
        from azure.storage.blob import BlobServiceClient

        self.server = server
        self.name = f"static-{uuid.uuid4().hex[:12]}"
        service = BlobServiceClient.from_connection_string(server.connection_string)
        self.client = service.get_container_client(self.name)
        self.client.create_container()

    def storage(self, backend: str = AZURE, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": backend,
            "OPTIONS": {
                "connection_string": self.server.connection_string,
                "azure_container": self.name,
                "overwrite_files": True,
                **options,
            },
        }

    def names(self) -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs())

    def contents(self, record: bool = False) -> dict[str, bytes]:
        """Every blob's bytes; the sync record only if ``record``."""
        return {
            name: self.get(name)
            for name in self.names()
            if record or not name.endswith(RECORD_BLOB)
        }

    def md5s(self) -> dict[str, str]:
        """Each blob's Content-MD5 (hex) as the listing shows it."""
        return {
            blob.name: bytes(blob.content_settings.content_md5 or b"").hex()
            for blob in self.client.list_blobs()
            if not blob.name.endswith(RECORD_BLOB)
        }

    def get(self, name: str) -> bytes:
        return bytes(self.client.download_blob(name).readall())

    def put(self, name: str, data: bytes) -> None:
        self.client.upload_blob(name, data, overwrite=True)

    def delete(self, name: str) -> None:
        self.client.delete_blob(name)

    def record(self, blob: str = RECORD_BLOB) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.get(blob))
        return document


@pytest.fixture
def container(azurite: AzuriteServer) -> Container:
    return Container(azurite)


class Requests:
    """The requests one run made, as Azurite's proxy saw them."""

    def __init__(self, container: Container, stdout: str, stderr: str) -> None:
        self.all: list[Request] = container.server.requests()
        self.kinds = collections.Counter(request.kind for request in self.all)
        self.container = container
        self.stdout = stdout
        self.stderr = stderr

    def blobs(self, kind: str) -> list[str]:
        """The blobs that requests of one operation touched, sorted; the
        lease, written and deleted by every run, is left out."""
        return sorted(
            blob
            for request in self.all
            if request.kind == kind
            and (blob := request.blob(self.container.name)) is not None
            and blob != LEASE_BLOB
        )

    def batches(self) -> list[list[str]]:
        """Blob names deleted by each BlobBatch request, in order."""
        prefix = f"DELETE /devstoreaccount1/{self.container.name}/"
        return [
            sorted(line[len(prefix) :] for line in request.batch)
            for request in self.all
            if request.kind == "BlobBatch"
        ]


def collect(container: Container, **options: Any) -> Requests:
    container.server.reset_requests()
    stdout, stderr = io.StringIO(), io.StringIO()
    run_collectstatic(stdout=stdout, stderr=stderr, **options)
    return Requests(container, stdout.getvalue(), stderr.getvalue())


# --- the backend ------------------------------------------------------------


def test_azure_storage_gets_the_azure_backend() -> None:
    from storages.backends.azure_storage import AzureStorage

    # Nothing is sent: the storage and its client are only built.
    options = {
        "connection_string": AzuriteServer().connection_string,
        "azure_container": "static",
        "overwrite_files": True,
    }
    backend = backend_for(AzureStorage(**options))
    assert type(backend) is AzureBackend
    assert backend.overwrites_in_place is True
    assert not backend_for(
        AzureStorage(**{**options, "overwrite_files": False})
    ).overwrites_in_place


def test_local_runs_do_not_import_the_azure_sdk(tmp_path: Path) -> None:
    code = (
        "import sys, django; django.setup()\n"
        "from django.core.files.storage import FileSystemStorage\n"
        "from collectstatic_plus.backends import backend_for\n"
        f"backend_for(FileSystemStorage(location={str(tmp_path)!r}))\n"
        "assert 'azure.storage.blob' not in sys.modules, 'SDK imported'\n"
        "assert 'storages.backends.azure_storage' not in sys.modules\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_listing_maps_each_blob_to_its_content_md5(
    settings: Any, container: Container
) -> None:
    from storages.backends.azure_storage import AzureStorage

    container.put("static/a.css", b"a")
    container.put("static/sub/b.js", b"bb")
    container.put("elsewhere/c.css", b"ccc")
    storage = AzureStorage(**container.storage(location="static")["OPTIONS"])
    container.server.reset_requests()
    listing = backend_for(storage).listing()
    assert listing is not None
    assert {name: (r.size, r.md5) for name, r in listing.items()} == {
        "a.css": (1, md5(b"a")),
        "sub/b.js": (2, md5(b"bb")),
    }
    assert container.server.counts() == {"ListBlobs": 1}


def test_blobs_put_in_blocks_have_no_md5_and_list_their_etag(
    settings: Any, container: Container
) -> None:
    from azure.storage.blob import BlobServiceClient
    from storages.backends.azure_storage import AzureStorage

    blocks = BlobServiceClient.from_connection_string(
        container.server.connection_string, max_single_put_size=4, max_block_size=4
    ).get_container_client(container.name)
    blocks.upload_blob("big.txt", b"0123456789")
    etag = blocks.get_blob_client("big.txt").get_blob_properties().etag.strip('"')
    listing = backend_for(AzureStorage(**container.storage()["OPTIONS"])).listing()
    assert listing is not None
    assert listing["big.txt"].etag == etag
    assert listing["big.txt"].md5 is None


def test_listing_reads_one_page_per_page_size(
    tmp_path: Path,
    settings: Any,
    container: Container,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 250))]
    use(settings, container.storage())
    collect(container, parallel=16)
    monkeypatch.setattr(AzureBackend, "page_size", 100)
    run = collect(container)
    assert run.stdout == "\n0 static files copied, 250 unmodified.\n"
    # 252 blobs with the record and the lease: pages of 100, 100 and 52.
    assert run.kinds == leased({"GetBlob": 1, "ListBlobs": 3})


# --- incremental runs -------------------------------------------------------


def test_verify_reads_only_the_blobs_the_listing_cannot_vouch_for(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    from azure.storage.blob import BlobServiceClient

    source = many(tmp_path / "src", 10)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage())
    collect(container)
    # Same bytes, put in blocks: no Content-MD5, only the record knows them.
    blocks = BlobServiceClient.from_connection_string(
        container.server.connection_string, max_single_put_size=8, max_block_size=8
    ).get_container_client(container.name)
    for name in ("d0/f0.css", "d1/f1.css"):
        blocks.upload_blob(name, (source / name).read_bytes(), overwrite=True)
    blocks.upload_blob("d2/f2.css", b"tampered, in blocks", overwrite=True)

    run = collect(container, verify=True)
    assert run.stdout == "\n1 static file copied, 9 unmodified.\n"
    # One download per blob without Content-MD5; the others match by listing.
    assert run.blobs("GetBlob") == sorted(
        ["d0/f0.css", "d1/f1.css", "d2/f2.css", RECORD_BLOB]
    )
    assert run.blobs("PutBlob") == sorted(["d2/f2.css", RECORD_BLOB])
    assert container.contents() == read_tree(source)


def test_verify_hashes_gzip_encoded_blobs_as_stored(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    from azure.storage.blob import BlobServiceClient, ContentSettings

    data = gzip.compress(b"console.log('app');\n" * 20, mtime=0)
    source = write_tree(tmp_path / "src", {"js/app.js.gz": data})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage())
    collect(container)
    # AzureStorage labels .gz files Content-Encoding: gzip; put again in
    # blocks (no Content-MD5), only a download can tell it is unchanged.
    blocks = BlobServiceClient.from_connection_string(
        container.server.connection_string, max_single_put_size=8, max_block_size=8
    ).get_container_client(container.name)
    encoded = ContentSettings(content_type="text/javascript", content_encoding="gzip")
    blocks.upload_blob("js/app.js.gz", data, overwrite=True, content_settings=encoded)

    run = collect(container, verify=True)
    assert run.stdout == "\n0 static files copied, 1 unmodified.\n"
    assert run.kinds == leased({"GetBlob": 2, "ListBlobs": 1, "PutBlob": 1})
    assert run.blobs("PutBlob") == [RECORD_BLOB]


def test_default_overwrite_files_false_deletes_then_saves(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    source = many(tmp_path / "src", 10)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage(overwrite_files=False))
    cold = collect(container)
    # AzureStorage asks whether each file's name is free before writing it;
    # the record is written by a conditional PutBlob, without asking.
    assert cold.kinds == leased(
        {
            "GetBlob": 1,
            "ListBlobs": 2,
            "GetBlobProperties": 10,
            "PutBlob": 11,
        }
    )
    (source / "d0/f0.css").write_text("/* changed */\n")
    changed = collect(container)
    assert changed.stdout == "\n1 static file copied, 9 unmodified.\n"
    # The changed file is deleted, then saved; the record is replaced in
    # place by its conditional PutBlob, not deleted.
    assert changed.blobs("DeleteBlob") == ["d0/f0.css"]
    assert changed.blobs("PutBlob") == sorted(["d0/f0.css", RECORD_BLOB])
    assert changed.kinds == leased(
        {
            "GetBlob": 1,
            "ListBlobs": 2,
            "GetBlobProperties": 1,
            "DeleteBlob": 1,
            "PutBlob": 2,
        }
    )
    assert collect(container).kinds == leased({"GetBlob": 1, "ListBlobs": 1})
    assert container.contents() == read_tree(source)


# --- --delete -----------------------------------------------------------------


def test_delete_keeps_the_record_when_there_is_no_location(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    source = many(tmp_path / "src", 5)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage())
    collect(container, delete=True)
    container.put("stale.css", b"stale")
    run = collect(container, delete_unowned=True)
    assert run.batches() == [["stale.css"]]
    assert RECORD_BLOB in container.names()
    assert collect(container, delete=True).kinds == leased(
        {"GetBlob": 1, "ListBlobs": 1}
    )


def test_delete_batches_256_blobs_per_request(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    old = many(tmp_path / "old", 300)
    settings.STATICFILES_DIRS = [str(old)]
    use(settings, container.storage())
    collect(container, parallel=16)
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "new", {"a.css": "a"}))]
    run = collect(container, delete=True)

    assert [len(batch) for batch in run.batches()] == [256, 44]
    assert sorted(name for batch in run.batches() for name in batch) == sorted(
        read_tree(old)
    )
    # a.css, the record, then the record without the deleted blobs.
    assert run.kinds == leased(
        {"GetBlob": 1, "ListBlobs": 2, "PutBlob": 3, "BlobBatch": 2}
    )
    assert container.contents() == {"a.css": b"a"}


def test_a_blob_that_cannot_be_deleted_fails_the_run_by_name(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    source = many(tmp_path / "src", 5)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage())
    collect(container)
    container.put("stale-leased.css", b"leased")
    container.put("stale-free.css", b"free")
    lease = container.client.get_blob_client("stale-leased.css").acquire_lease()
    try:
        with pytest.raises(CommandError) as raised:
            collect(container, delete_unowned=True)
    finally:
        lease.release()
    assert str(raised.value) == (
        "Deleting stale files: 1 of 2 files could not be deleted: "
        "'stale-leased.css' (412 LeaseIdMissing)."
    )
    # Not retried: a lease is not a transient failure.
    assert AzureBackend(Storage()).classify(raised.value.__cause__) == "other"
    assert "stale-free.css" not in container.names()
    assert "stale-leased.css" in container.names()


# --- dry runs and parallel runs -------------------------------------------------


def test_parallel_uploads_share_one_client_with_a_wide_pool(
    sources: Path,
    settings: Any,
    container: Container,
    caplog: pytest.LogCaptureFixture,
) -> None:
    many(sources / "many", 120)
    use(
        settings, container.storage(backend="tests.azure_storages.ObservedAzureStorage")
    )
    ObservedAzureStorage.seen.clear()
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        run_collectstatic(parallel=32)

    # One client for all workers, uploads on our threads, a pool of 32.
    assert len(set(ObservedAzureStorage.seen)) == 1
    assert ObservedAzureStorage.seen[0][:2] == (1, 32)
    assert len(ObservedAzureStorage.seen) == 127
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    # The user's storage is as configured again after the run.
    from django.contrib.staticfiles.storage import staticfiles_storage

    storage: Any = staticfiles_storage
    assert storage.upload_max_conn == 2
    session = client_session(storage.client)
    assert session.get_adapter(storage.client.url)._pool_maxsize == 10


def test_reported_requests_are_the_requests_azurite_saw(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    source = many(tmp_path / "src", 12)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage())
    collect(container)
    (source / "d0/f0.css").unlink()
    (source / "d1/f1.css").write_text("/* changed */\n")
    report = tmp_path / "report.json"
    run = collect(container, delete=True, parallel=4, report=str(report))
    # d1/f1.css, the record, then the record without d0/f0.css; and the lease.
    assert (
        json.loads(report.read_text())["requests"]
        == dict(run.kinds)
        == leased(
            {
                "BlobBatch": 1,
                "GetBlob": 1,
                "ListBlobs": 2,
                "PutBlob": 3,
            }
        )
    )


# --- manifest storage ---------------------------------------------------------


def test_manifest_is_rewritten_in_place_without_a_delete(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    source = write_tree(tmp_path / "src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage(AZURE_MANIFEST))
    collect(container, parallel=8)
    (source / "css/c.css").write_text("q { color: blue }\n")
    run = collect(container, parallel=8)
    assert "staticfiles.json" in run.blobs("PutBlob")
    assert run.kinds == leased({"GetBlob": 1, "ListBlobs": 2, "PutBlob": 4})


def test_delete_keeps_a_dot_name_azure_stores_without_its_dot(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    """AzureStorage stores '.well-known/security.txt' as
    'well-known/security.txt' (no location): that blob is this run's upload,
    neither stale nor "not ours"."""
    files = {".well-known/security.txt": "Contact: x\n", "a.css": "a"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    use(settings, container.storage())
    collect(container, use_default_ignore_patterns=False)
    run = collect(
        container, use_default_ignore_patterns=False, delete=True, delete_unowned=True
    )
    assert "Deleting stale" not in run.stdout
    assert container.names() == [
        "a.css",
        "collectstatic-plus.json",
        "well-known/security.txt",
    ]


def test_a_dot_name_azure_stores_without_its_dot_is_found_unchanged(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    files = {".well-known/security.txt": "Contact: x\n", "a.css": "a"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    use(settings, container.storage())
    collect(container, use_default_ignore_patterns=False)
    run = collect(container, use_default_ignore_patterns=False)
    assert run.stdout == "\n0 static files copied, 2 unmodified.\n"
    assert run.blobs("PutBlob") == []
    collect(container, use_default_ignore_patterns=False, check=True, verbosity=0)


@pytest.mark.parametrize(
    "options", [{"delete": True}, {"delete": True, "dry_run": True}]
)
def test_a_name_azure_refuses_fails_alone_with_delete_and_in_a_dry_run(
    tmp_path: Path, settings: Any, container: Container, options: dict[str, Any]
) -> None:
    deep = "/".join(["d" * 200] * 6) + "/x.css"  # over Azure's 1,024 characters
    settings.STATICFILES_DIRS = [
        str(write_tree(tmp_path / "src", {deep: "x", "a.css": "a"}))
    ]
    use(settings, container.storage())
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr, **options)
    assert str(raised.value) == f"1 static file could not be collected: {deep}."
    assert stderr.getvalue() == (
        f"Could not collect '{deep}': ValueError: File name max len is 1024\n"
    )


def test_a_file_named_as_azure_stores_the_record_is_refused_before_any_write(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    files = {"collectstatic-plus.json": "{}", "a.css": "a"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    use(settings, container.storage())  # no location: the record loses its dot
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value) == (
        "'collectstatic-plus.json' is both the sync record's name (or its "
        "lease's) and a file this run writes: set COLLECTSTATIC_PLUS"
        "['RECORD_NAME'] to another name."
    )
    assert container.names() == []


def test_delete_unowned_deletes_the_dot_ended_blob_not_the_one_azure_maps_it_to(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    """AzureStorage maps 'd/data.' to 'd/data': a listed name is deleted as
    listed, never through that mapping (it deleted the collected file)."""
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"d/data": "x"}))]
    use(settings, container.storage(location="st"))
    collect(container)
    container.put("st/d/data.", b"not ours")
    run = collect(container, delete=True, delete_unowned=True)
    assert run.batches() == [["st/d/data."]]
    assert container.names() == ["st/.collectstatic-plus.json", "st/d/data"]


def test_a_location_azure_writes_without_its_dot_is_listed_where_it_writes(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    use(settings, container.storage(location=".static"))
    collect(container)
    run = collect(container)
    assert run.stdout == "\n0 static files copied, 1 unmodified.\n"
    assert container.names() == ["static/.collectstatic-plus.json", "static/a.css"]


def test_no_container_is_one_line(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    use(settings, container.storage(azure_container=None))
    with pytest.raises(CommandError) as raised:
        run_collectstatic(dry_run=True)
    assert str(raised.value) == (
        "The static files storage (storages.backends.azure_storage.AzureStorage) "
        "could not be set up: ValueError: Please specify a container name."
    )


def test_a_manifest_put_in_blocks_is_not_written_again_by_a_no_change_run(
    tmp_path: Path, settings: Any, container: Container
) -> None:
    """Its listing shows an ETag, no Content-MD5: not the MD5 the record
    keeps of it, and no sign another run published it either."""
    source = write_tree(tmp_path / "src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, container.storage("tests.azure_storages.AzureBlockManifestStorage"))
    collect(container)
    assert container.md5s()["staticfiles.json"] == ""  # (put in blocks)
    run = collect(container)
    puts = ("PutBlob", "PutBlock", "PutBlockList")
    assert [blob for kind in puts for blob in run.blobs(kind)] == []  # (no change)
    collect(container, check=True, verbosity=0)
