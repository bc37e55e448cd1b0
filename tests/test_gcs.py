"""Google Cloud Storage through django-storages against the GCS emulator.

The emulator (gcp-storage-emulator, in memory) runs in its own process on
127.0.0.1 behind a thin wrapper that counts requests at the server (see
``tests/servers/gcs.py``), so the counts are exact. Clients reach it through
``STORAGE_EMULATOR_HOST`` with anonymous credentials.

Requests by kind, as counted here:

- LIST: one ``objects.list`` page (1,000 blobs);
- DOWNLOAD: one media download (the sync record, or a blob read back);
- META: one ``objects.get`` of a blob's metadata. django-storages makes one
  before every upload (``GoogleCloudFile`` looks the blob up to keep its
  metadata), so a file's upload costs META + UPLOAD;
- UPLOAD: one upload (multipart: metadata and bytes in one request). The
  sync record is uploaded by the backend itself, on the condition that it is
  still the generation the run read: UPLOAD alone, no META;
- DELETE: one ``objects.delete``;
- BATCH: one batch request (up to 100 deletes inside).

Every run but a dry run also takes a lease beside the record (one
conditional UPLOAD) and gives it back at the end (one DELETE).

Recent google-cloud-storage (3.17 here) also looks each bucket up once per
client, in a background thread (``buckets.get``, for tracing attributes), even
with tracing off. It would land at a random moment, so the fixture turns it
off with the client's own switch, ``DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA``;
``test_the_client_adds_one_bucket_lookup_per_run_by_default`` counts it.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import pytest

from .conftest import (
    MANIFEST_TREE,
    NO_BUCKET_METADATA,
    many,
    md5,
    read_tree,
    run_collectstatic,
    use,
    write_tree,
)
from .destinations import REQUESTS
from .servers.gcs import GCSServer, kind

pytestmark = pytest.mark.gcs
REPO = Path(__file__).resolve().parents[1]
RECORD = ".collectstatic-plus.json"
GCS = "storages.backends.gcloud.GoogleCloudStorage"
GCS_MANIFEST = "tests.gcs_storages.GCSManifestStorage"
#: The lease a run takes beside the record, and the requests that costs.
LEASE_KEY = RECORD + ".lease"
LEASE = REQUESTS["gcs"].lease


def leased(kinds: dict[str, int]) -> Counter[str]:
    """A run's requests: ``kinds``, and the lease taken and given back."""
    return Counter(kinds) + Counter(LEASE)


class GCSBucket:
    """A fresh bucket on the emulator and the settings that point at it."""

    def __init__(self, server: GCSServer) -> None:
        from google.cloud import storage  # type: ignore[import-untyped]

        self.server = server
        self.name = f"static-{uuid.uuid4().hex[:12]}"
        self.credentials = anonymous()
        self.client = storage.Client(
            project=server.project, credentials=self.credentials
        )
        self.bucket = self.client.create_bucket(self.name)

    def storage(self, backend: str = GCS, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": backend,
            "OPTIONS": {
                "bucket_name": self.name,
                "project_id": self.server.project,
                "credentials": self.credentials,
                "querystring_auth": False,
                **options,
            },
        }

    def blobs(self, record: bool = False) -> list[Any]:
        return [
            blob
            for blob in self.client.list_blobs(self.name)
            if record or not blob.name.endswith(RECORD)
        ]

    def contents(self, record: bool = False) -> dict[str, bytes]:
        """Every blob's stored bytes; the sync record only if ``record``."""
        return {
            blob.name: blob.download_as_bytes(raw_download=True)
            for blob in self.blobs(record)
        }

    def md5s(self) -> dict[str, str]:
        """Each blob's ``md5Hash`` from a listing, as hex."""
        return {
            blob.name: base64.b64decode(blob.md5_hash).hex() for blob in self.blobs()
        }

    def generations(self) -> dict[str, int]:
        return {blob.name: blob.generation for blob in self.blobs(record=True)}

    def put(self, name: str, data: bytes) -> None:
        self.bucket.blob(name).upload_from_string(data)

    def delete(self, name: str) -> None:
        self.bucket.blob(name).delete()


@pytest.fixture
def bucket(gcs_server: GCSServer) -> GCSBucket:
    return GCSBucket(gcs_server)


def anonymous() -> Any:
    """Credentials for the emulator: no token, no default-credentials lookup."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def configured_storage() -> Any:
    """The ``staticfiles`` storage instance collectstatic used."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    return cast(Any, staticfiles_storage)._wrapped


def forget_configured_storage() -> None:
    """Build the ``staticfiles`` storage again on next use, as a new process."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils.functional import empty

    cast(Any, staticfiles_storage)._wrapped = empty


def object_name(line: str, bucket: str) -> str:
    """The object a request or batched call names in its path."""
    path = urlsplit(line.split(" ", 1)[1]).path
    return unquote(path.split(f"/b/{bucket}/o/", 1)[1])


class Requests:
    """The requests one run made, read at the server."""

    def __init__(self, bucket: GCSBucket, stdout: str, stderr: str) -> None:
        recorded = bucket.server.recorded()
        self.lines = recorded["requests"]
        self.kinds = Counter(kind(line) for line in self.lines)
        # The lease, written and deleted by every run, is left out.
        self.uploaded = sorted(
            name for name in recorded["uploaded"] if name != LEASE_KEY
        )
        self.batched = recorded["batched"]
        self.bucket = bucket
        self.stdout = stdout
        self.stderr = stderr

    def names(self, of_kind: str) -> list[str]:
        return sorted(
            object_name(line, self.bucket.name)
            for line in self.lines
            if kind(line) == of_kind
        )

    @property
    def batch_deleted(self) -> list[str]:
        return sorted(
            object_name(line, self.bucket.name)
            for line in self.batched
            if line.startswith("DELETE ")
        )


def collect(bucket: GCSBucket, **options: Any) -> Requests:
    bucket.server.reset_requests()
    stdout, stderr = io.StringIO(), io.StringIO()
    run_collectstatic(stdout=stdout, stderr=stderr, **options)
    return Requests(bucket, stdout.getvalue(), stderr.getvalue())


def test_no_change_rerun_reads_the_record_and_a_listing_page_per_thousand_blobs(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 1200))]
    use(settings, bucket.storage())
    collect(bucket, parallel=32)
    run = collect(bucket, parallel=32)

    assert run.stdout == "\n0 static files copied, 1200 unmodified.\n"
    # One download of the record, two listing pages; nothing written but
    # the lease, taken and given back.
    assert run.kinds == leased({"DOWNLOAD": 1, "LIST": 2})
    assert run.names("DOWNLOAD") == [RECORD]


def test_delete_sends_at_most_100_deletes_per_batch_request(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    source = many(tmp_path / "src", 5)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage())
    collect(bucket)
    stale = [f"old/s{i:03}.css" for i in range(250)]
    for name in stale:
        bucket.put(name, b"stale")
    run = collect(bucket, delete_unowned=True)

    assert run.kinds == leased({"DOWNLOAD": 1, "LIST": 1, "BATCH": 3})
    assert run.batch_deleted == stale
    assert sorted(bucket.contents()) == sorted(read_tree(source))


def test_parallel_uploads_share_one_client_with_a_pool_as_wide_as_the_workers(
    sources: Path, settings: Any, bucket: GCSBucket, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.gcs_storages import ObservedGCSStorage

    many(sources / "many", 120)
    use(settings, bucket.storage("tests.gcs_storages.ObservedGCSStorage"))
    ObservedGCSStorage.seen.clear()
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        run_collectstatic(parallel=32)

    assert len(ObservedGCSStorage.seen) == 127
    assert set(ObservedGCSStorage.seen) == {(ObservedGCSStorage.seen[0][0], 32)}
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    # The session is as configured again after the run.
    adapter = configured_storage().client._http.get_adapter("http://127.0.0.1/")
    assert adapter._pool_maxsize == 10


def test_verify_trusts_listed_md5s_and_downloads_only_the_blob_that_differs(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    source = many(tmp_path / "src", 10)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage())
    collect(bucket)
    bucket.put("d0/f5.css", b"tampered, same record")
    run = collect(bucket, verify=True)
    assert run.stdout == "\n1 static file copied, 9 unmodified.\n"
    # Nine listed MD5s are the sources': no read. The tenth differs, which
    # could still be the same content stored gzipped: one download tells.
    assert run.names("DOWNLOAD") == sorted([RECORD, "d0/f5.css"])
    assert run.uploaded == ["d0/f5.css"]
    assert run.kinds == leased({"DOWNLOAD": 2, "LIST": 1, "META": 1, "UPLOAD": 1})


def test_gzipped_blobs_are_recognised_by_the_record(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    source = many(tmp_path / "src", 10)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage(gzip=True))
    collect(bucket)
    # Stored gzipped: the listed MD5 is not the source's; the record knows.
    stored = bucket.contents()
    assert all(data[:2] == b"\x1f\x8b" for data in stored.values())
    assert bucket.md5s() != {n: md5(d) for n, d in read_tree(source).items()}
    run = collect(bucket)
    assert run.stdout == "\n0 static files copied, 10 unmodified.\n"
    assert run.kinds == leased({"DOWNLOAD": 1, "LIST": 1})


def test_manifest_storage_no_change_rerun_in_a_new_process_writes_nothing(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", MANIFEST_TREE))]
    use(settings, bucket.storage(GCS_MANIFEST))
    collect(bucket)
    # A deploy runs in a new process: the same settings build new credentials.
    forget_configured_storage()
    use(settings, bucket.storage(GCS_MANIFEST, credentials=anonymous()))
    run = collect(bucket, verbosity=2)
    assert "Post-processing up to date." in run.stdout
    # The record and one listing page; the new storage instance also reads its
    # manifest when Django constructs it (ManifestFilesMixin.__init__).
    assert run.kinds == leased({"DOWNLOAD": 2, "LIST": 1, "META": 1})


def test_a_gzipped_manifest_is_not_written_again_by_a_no_change_run(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    """Gzipped by the storage (its JSON content type listed), the manifest is
    listed with the MD5 of the compressed bytes: the run records that, as
    its upload answered, not the MD5 of what it handed the storage."""
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", MANIFEST_TREE))]
    types = ("text/css", "text/javascript", "application/json")
    use(settings, bucket.storage(GCS_MANIFEST, gzip=True, gzip_content_types=types))
    collect(bucket)
    assert bucket.contents()["staticfiles.json"][:2] == b"\x1f\x8b"
    run = collect(bucket, verbosity=2)
    assert "Post-processing up to date." in run.stdout
    assert run.uploaded == []
    assert run.kinds == leased({"DOWNLOAD": 1, "LIST": 1})
    check = collect(bucket, check=True)  # (exits 1 if anything would change)
    assert "Post-processing up to date." in check.stdout


def test_the_client_adds_one_bucket_lookup_per_run_by_default(
    tmp_path: Path,
    settings: Any,
    bucket: GCSBucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 10))]
    use(settings, bucket.storage())
    collect(bucket)
    monkeypatch.delenv(NO_BUCKET_METADATA)
    forget_configured_storage()
    bucket.server.reset_requests()
    run_collectstatic()
    # google-cloud-storage looks the bucket up in a background thread on a
    # client's first call; wait for it to land.
    cache = getattr(configured_storage().client, "_bucket_metadata_cache", None)
    deadline = time.monotonic() + 10
    while cache is not None and cache._inflight_fetches:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kinds = Counter(kind(line) for line in bucket.server.requests())
    expected = leased({"DOWNLOAD": 1, "LIST": 1})
    assert kinds == (expected if cache is None else {**expected, "BUCKET": 1})


def test_backend_reports_requests_by_json_api_method(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 4))]
    use(settings, bucket.storage())
    report = tmp_path / "report.json"
    collect(bucket, report=str(report))
    import json

    # Four files (a lookup and an insert each), the record (an insert), the
    # lease (an insert and a delete); no listing after the uploads: their
    # answers say what landed.
    assert json.loads(report.read_text())["requests"] == {
        "objects.download": 1,
        "objects.list": 1,
        "objects.get": 4,
        "objects.insert": 6,
        "objects.delete": 1,
    }
    bucket.put("stale.css", b"stale")
    collect(bucket, report=str(report), delete_unowned=True)
    assert json.loads(report.read_text())["requests"] == {
        "objects.download": 1,
        "objects.list": 1,
        "batch": 1,
        "objects.insert": 1,
        "objects.delete": 1,
    }


def test_backend_is_chosen_for_google_cloud_storage_and_subclasses_only(
    bucket: GCSBucket,
) -> None:
    from django.core.files.storage import FileSystemStorage
    from storages.backends.gcloud import GoogleCloudStorage

    from collectstatic_plus.backends import backend_for
    from collectstatic_plus.backends.gcs import GCSBackend
    from tests.gcs_storages import GCSManifestStorage

    options = bucket.storage()["OPTIONS"]
    assert type(backend_for(GoogleCloudStorage(**options))) is GCSBackend
    assert type(backend_for(GCSManifestStorage(**options))) is GCSBackend
    assert type(backend_for(FileSystemStorage())) is not GCSBackend
    assert GCSBackend(GoogleCloudStorage(**options)).overwrites_in_place
    assert not GCSBackend(
        GoogleCloudStorage(**options, file_overwrite=False)
    ).overwrites_in_place


def test_choosing_a_backend_does_not_import_the_google_sdk() -> None:
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "from django.core.files.storage import FileSystemStorage\n"
        "from collectstatic_plus.backends import backend_for\n"
        "backend_for(FileSystemStorage(location='/tmp'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('google')))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "[]\n"


def test_listing_maps_md5_hashes_to_hex_and_other_blobs_to_their_generation(
    bucket: GCSBucket,
) -> None:
    from storages.backends.gcloud import GoogleCloudStorage

    from collectstatic_plus.backends.gcs import GCSBackend

    bucket.put("static/a.css", b"a")
    bucket.put("static/sub/b.css", b"bb")
    bucket.put("static/", b"")  # a folder placeholder
    bucket.put("other/c.css", b"c")
    bucket.bucket.blob("static/composed.css").compose(
        [bucket.bucket.blob("static/a.css"), bucket.bucket.blob("static/sub/b.css")]
    )
    backend = GCSBackend(
        GoogleCloudStorage(**bucket.storage(location="static")["OPTIONS"])
    )
    listing = backend.listing()
    assert listing is not None
    assert sorted(listing) == ["a.css", "composed.css", "sub/b.css"]
    assert listing["a.css"].size == 1
    assert listing["a.css"].md5 == md5(b"a")
    assert listing["sub/b.css"].md5 == md5(b"bb")
    assert backend.read("sub/b.css") == b"bb"
    assert backend.read("missing.css") is None
    digest = backend.digest("sub/b.css")
    assert digest is not None and (digest.md5, digest.size) == (md5(b"bb"), 2)
    assert backend.digest("missing.css") is None


def test_a_blob_without_md5_is_known_by_its_generation() -> None:
    """Composite blobs have no MD5 on the service (the emulator gives one)."""
    from types import SimpleNamespace

    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.backends.gcs import _etag

    with_md5 = SimpleNamespace(md5_hash="XUFAKrxLKna5cZ2REBfFkg==", generation=7)
    composite = SimpleNamespace(md5_hash=None, generation=1712, etag="CPCNAhAB")
    assert _etag(with_md5) == md5(b"hello")
    assert Remote(5, _etag(with_md5)).md5 == md5(b"hello")
    assert _etag(composite) == "generation:1712"
    assert Remote(5, _etag(composite)).md5 is None


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [(403, "Forbidden", "permanent"), (503, "Service Unavailable", "throttled")],
)
def test_delete_many_raises_naming_the_blobs_it_could_not_delete(
    bucket: GCSBucket, status: int, reason: str, kind: str
) -> None:
    from storages.backends.gcloud import GoogleCloudStorage

    from collectstatic_plus.backends.base import DeleteFailed
    from collectstatic_plus.backends.gcs import GCSBackend

    storage = GoogleCloudStorage(**bucket.storage(location="static")["OPTIONS"])
    backend = GCSBackend(storage)
    for name in ("a.css", "b.css", "c.css"):
        bucket.put(f"static/{name}", b"x")
    real_batch = storage.client.batch

    def batch_refusing_b(raise_exception: bool = True) -> Any:
        batch = real_batch(raise_exception=raise_exception)
        finish = batch.finish

        def finish_then_refuse(raise_exception: bool = True) -> Any:
            responses = finish(raise_exception=raise_exception)
            for response, (_, url, *_rest) in zip(
                responses, batch._requests, strict=True
            ):
                if url.split("?")[0].endswith("%2Fb.css"):
                    response.status_code, response.reason = status, reason
            return responses

        batch.finish = finish_then_refuse
        return batch

    # The emulator never refuses a delete: the batch's answer for b.css is
    # replaced by the service's 403 after the fact.
    storage.client.batch = batch_refusing_b
    with pytest.raises(DeleteFailed) as raised:
        backend.delete_many(["a.css", "b.css", "gone.css"])
    said = f"{status} {reason}"
    assert str(raised.value) == f"could not delete 1 file(s): 'b.css' ({said})"
    assert raised.value.failures == [("b.css", said)]
    assert backend.classify(raised.value) == kind  # (a 503 is retried)
    assert sorted(bucket.contents()) == ["static/c.css"]


def test_delete_falls_back_to_one_request_per_blob_when_batches_are_not_served(
    tmp_path: Path, settings: Any, bucket: GCSBucket
) -> None:
    """fake-gcs-server answers a batch with a 200 the client cannot parse."""
    source = many(tmp_path / "src", 5)
    write_tree(source, {"old/a.css": "a", "old/b.css": "b"})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage())
    collect(bucket)
    (source / "old/a.css").unlink()
    (source / "old/b.css").unlink()
    bucket.server.serve_batches(False)
    try:
        run = collect(bucket, delete=True, verbosity=2)
    finally:
        bucket.server.serve_batches(True)
    # One batch the client cannot read, a delete per blob, then the record
    # without them (a conditional upload: no META).
    assert run.kinds == leased(
        {
            "DOWNLOAD": 1,
            "LIST": 1,
            "BATCH": 1,
            "DELETE": 2,
            "UPLOAD": 1,
        }
    )
    assert "Deleting stale 'old/a.css'" in run.stdout
    assert "Deleting stale 'old/b.css'" in run.stdout
    assert sorted(bucket.contents()) == sorted(read_tree(source))
    # The next --delete has nothing left to do.
    assert collect(bucket, delete=True).kinds == leased({"DOWNLOAD": 1, "LIST": 1})
