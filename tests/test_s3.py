"""S3 through django-storages against moto's server over HTTP on 127.0.0.1.

Requests are counted at the server, so the counts are exact. LIST is one
ListObjectsV2 page (1,000 keys); the sync record is one GET to read and one
PUT to write. Every run but a dry run also takes a lease beside the record
(one conditional PUT) and gives it back at the end (one DELETE).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .buckets import RECORD, S3_MANIFEST, Bucket, keys_of, kinds
from .conftest import (
    many,
    read_tree,
    record_files,
    run_collectstatic,
    use,
    visible,
    wait_until,
    write_tree,
)
from .destinations import REQUESTS
from .servers.s3 import S3Server
from .storages import ObservedS3Storage

pytestmark = pytest.mark.s3
REPO = Path(__file__).resolve().parents[1]
#: The lease a run takes beside the record, and the requests that costs.
LEASE_KEY = RECORD + ".lease"
LEASE = REQUESTS["s3"].lease


def leased(kinds: dict[str, int]) -> Counter[str]:
    """A run's requests: ``kinds``, and the lease taken and given back."""
    return Counter(kinds) + Counter(LEASE)


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server)


class Requests:
    """The requests one run made, read at the server."""

    def __init__(self, bucket: Bucket, stdout: str, stderr: str) -> None:
        self.lines = bucket.server.requests()
        self.kinds = kinds(self.lines)
        self.bucket = bucket
        self.stdout = stdout
        self.stderr = stderr

    def keys(self, method: str) -> list[str]:
        """The keys requests of one method touched; the lease, written and
        deleted by every run, is left out."""
        return [
            key
            for key in keys_of(self.lines, method, self.bucket.name)
            if key != LEASE_KEY
        ]


def collect(bucket: Bucket, **options: Any) -> Requests:
    bucket.server.reset_requests()
    stdout, stderr = io.StringIO(), io.StringIO()
    run_collectstatic(stdout=stdout, stderr=stderr, **options)
    return Requests(bucket, stdout.getvalue(), stderr.getvalue())


@pytest.mark.parametrize("parallel", [None, 8])
def test_cold_upload_is_one_put_per_file_and_no_per_file_reads(
    sources: Path, settings: Any, bucket: Bucket, parallel: Any
) -> None:
    many(sources / "many", 40)
    use(settings, bucket.storage())
    run = collect(bucket, parallel=parallel)

    assert run.stdout == "\n47 static files copied.\n"
    # Record read (absent), one listing, one PUT each (the ETags the PUTs
    # answered with are what the record keeps: no listing afterwards).
    assert run.kinds == leased({"GET": 1, "LIST": 1, "PUT": 48})
    assert run.keys("PUT") == sorted([*visible(sources), RECORD])
    assert bucket.contents() == visible(sources)
    assert bucket.etags() == {
        name: hashlib.md5(data).hexdigest() for name, data in visible(sources).items()
    }


def test_record_sees_each_upload_as_its_put_answered_without_listing_again(
    sources: Path, settings: Any, bucket: Bucket
) -> None:
    use(settings, bucket.storage())
    run = collect(bucket, parallel=8)

    assert run.kinds == leased({"GET": 1, "LIST": 1, "PUT": 8})
    rows = record_files(json.loads(bucket.get(RECORD)))
    etags = bucket.etags()
    assert {name: row["seen"] for name, row in rows.items()} == {
        name: {"size": len(data), "etag": etags[name]}
        for name, data in visible(sources).items()
    }


def test_no_change_rerun_reads_a_listing_page_per_thousand_files(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 1200))]
    use(settings, bucket.storage())
    collect(bucket, parallel=32)
    run = collect(bucket, parallel=32)

    assert run.stdout == "\n0 static files copied, 1200 unmodified.\n"
    assert run.kinds == leased({"GET": 1, "LIST": 2})
    listed = sum(run.kinds.values()) - sum(LEASE.values())
    assert listed <= math.ceil(1200 / 1000) + 3


def test_verify_ignores_the_record_and_checks_every_file(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    source = many(tmp_path / "src", 10)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage(gzip=True, gzip_content_types=("text/css",)))
    collect(bucket)
    # Gzipped objects have ETags that are not the source's MD5: only the
    # record knows they are unchanged.
    assert collect(bucket).kinds == leased({"GET": 1, "LIST": 1})
    bucket.put("d0/f5.css", gzip.compress(b"tampered"))
    run = collect(bucket, verify=True)
    # Each object is read and compared by content: one GET per file.
    assert run.stdout == "\n1 static file copied, 9 unmodified.\n"
    assert run.keys("PUT") == ["d0/f5.css"]
    assert run.kinds == leased({"GET": 11, "LIST": 1, "PUT": 1})


HEAD = (
    b'{"format": "collectstatic-plus-record", "version": 2, "fingerprint": "%(fp)s", '
    b'"columns": ["path", "md5", "size", "source", "seen_size", "seen_etag", '
    b'"seen_mtime_ns"], '
)
HOSTILE_RECORDS = {
    "not json": b"{not json",
    "wrong types": HEAD + b'"files": [["d0/f0.css", 5, "x", null, null, null, null]]}',
    "escaping path": HEAD + b'"files": [["../../etc/passwd", '
    b'"00000000000000000000000000000000", 1, null, null, null, null]]}',
    "another bucket": HEAD.replace(b"%(fp)s", b"0000") + b'"files": []}',
}


@pytest.mark.parametrize("content", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS)
def test_untrustworthy_record_is_ignored_with_a_warning(
    tmp_path: Path, settings: Any, bucket: Bucket, content: bytes
) -> None:
    source = many(tmp_path / "src", 6)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage(gzip=True, gzip_content_types=("text/css",)))
    collect(bucket)
    fingerprint = json.loads(bucket.get(RECORD))["fingerprint"].encode()
    bucket.put(RECORD, content.replace(b"%(fp)s", fingerprint))
    bucket.put("stale.css", b"not collected")
    (source / "d0/f0.css").write_text("/* changed */\n")

    run = collect(bucket, delete=True)
    assert run.stderr.startswith(f"Ignoring the sync record '{RECORD}': ")
    # Nothing is trusted: gzipped objects cannot be matched by ETag, so
    # every file is uploaded again; and nothing is known to be ours, so
    # nothing is deleted.
    assert run.keys("PUT") == sorted([*read_tree(source), RECORD])
    assert bucket.contents(gunzip=True) == {
        **read_tree(source),
        "stale.css": b"not collected",
    }
    assert b'"d0/f0.css"' in bucket.get(RECORD)


def test_keep_manifests_keeps_the_last_k_manifests_files(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a { color: red }", "b.js": "1;"})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage(S3_MANIFEST))
    hashed = []
    for version in range(3):
        (source / "a.css").write_text(f"a {{ color: #{version}{version}{version} }}")
        collect(bucket, delete=True, keep_manifests=2)
        digest = hashlib.md5((source / "a.css").read_bytes()).hexdigest()
        hashed.append(f"a.{digest[:12]}.css")
    names = set(bucket.contents())
    assert hashed[0] not in names
    assert {hashed[1], hashed[2], "staticfiles.json", "a.css", "b.js"} <= names


def test_clear_with_empty_location_uses_batched_deletes(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 10))]
    use(settings, bucket.storage())
    collect(bucket)
    bucket.put("old/stale.css", b"old")
    run = collect(bucket, clear=True, verbosity=2)
    assert run.kinds["BATCH_DELETE"] == 1
    assert "HEAD" not in run.kinds
    assert "Deleting 'old/stale.css'" in run.stdout
    assert "old/stale.css" not in bucket.contents()
    assert len(bucket.contents()) == 10


def test_clear_leaves_a_key_no_storage_call_can_name_and_clears_the_rest(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 10))]
    use(settings, bucket.storage())
    collect(bucket)
    bucket.put("/odd.css", b"odd")  # (S3Storage refuses the name '/odd.css')
    bucket.put("old/stale.css", b"old")
    run = collect(bucket, clear=True, verbosity=2)
    assert "Deleting 'old/stale.css'" in run.stdout
    assert "odd.css" not in run.stdout
    assert run.stderr == "--clear left /odd.css: no storage call names it.\n"
    assert "/odd.css" in bucket.contents()
    assert "old/stale.css" not in bucket.contents()
    assert len(bucket.contents()) == 11


def test_delete_many_tries_every_batch_and_names_the_keys_it_could_not_delete(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storages.backends.s3 import S3Storage

    from collectstatic_plus.backends import s3
    from collectstatic_plus.backends.base import DeleteFailed

    backend = s3.S3Backend(S3Storage(**bucket.storage(location="static")["OPTIONS"]))
    for name in ("a.css", "b.css", "c.css", "d.css"):
        bucket.put(f"static/{name}", b"x")
    real = backend.client.delete_objects

    def refusing_b(**request: Any) -> Any:
        # moto never refuses a key: b.css is left out of the request and
        # the service's per-key error put in the answer.
        asked = request["Delete"]["Objects"]
        request["Delete"]["Objects"] = [o for o in asked if o["Key"] != "static/b.css"]
        answer = real(**request)
        if len(asked) != len(request["Delete"]["Objects"]):
            refused = {"Key": "static/b.css", "Code": "InternalError", "Message": "x"}
            answer["Errors"] = [refused]
        return answer

    monkeypatch.setattr(backend.client, "delete_objects", refusing_b)
    monkeypatch.setattr(s3, "S3_DELETE_BATCH", 2)
    with pytest.raises(DeleteFailed) as raised:
        backend.delete_many(["a.css", "b.css", "c.css", "d.css"])
    assert str(raised.value) == (
        "could not delete 1 file(s): 'b.css' (InternalError: x)"
    )
    assert raised.value.error_code == "InternalError"  # (retried: transient)
    assert backend.classify(raised.value) == "transient"
    # The batch after the failed one was sent all the same.
    assert sorted(bucket.contents()) == ["static/b.css"]


def test_parallel_uploads_share_one_client_with_a_wide_pool(
    sources: Path, settings: Any, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    many(sources / "many", 120)
    storage = bucket.storage()
    storage["BACKEND"] = "tests.storages.ObservedS3Storage"
    use(settings, storage)
    ObservedS3Storage.seen.clear()
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        run_collectstatic(parallel=32)

    # One client for all workers, no s3transfer threads, a pool of 32.
    assert len(set(ObservedS3Storage.seen)) == 1
    assert ObservedS3Storage.seen[0][:2] == (False, 32)
    assert len(ObservedS3Storage.seen) == 127
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    # The user's storage is as configured again after the run.
    from django.contrib.staticfiles.storage import staticfiles_storage

    assert staticfiles_storage.transfer_config.use_threads is True
    assert staticfiles_storage.client_config.max_pool_connections == 10


def test_parallel_uploads_build_the_object_resource_class_once(
    sources: Path,
    settings: Any,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from boto3.resources.factory import ResourceFactory

    many(sources / "many", 30)
    use(settings, bucket.storage())
    built: list[str] = []
    original = ResourceFactory.load_from_definition

    def counting(self: Any, resource_name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(resource_name)
        return original(self, resource_name, *args, **kwargs)

    monkeypatch.setattr(ResourceFactory, "load_from_definition", counting)
    run = collect(bucket, parallel=8)

    # boto3 would build an Object class per upload (37 files and the record).
    assert built.count("Object") == 1
    assert run.kinds == leased({"GET": 1, "LIST": 1, "PUT": 38})
    assert bucket.contents() == visible(sources)
    from django.contrib.staticfiles.storage import staticfiles_storage

    assert type(staticfiles_storage.bucket).__name__ == "s3.Bucket"  # restored


def test_killed_upload_then_normal_run_converges(
    tmp_path: Path, s3_server: S3Server
) -> None:
    source = many(tmp_path / "src", 80)
    killed, clean = Bucket(s3_server), Bucket(s3_server)

    def command(bucket: Bucket, delay: str) -> tuple[list[str], dict[str, str]]:
        options = bucket.storage()["OPTIONS"]
        settings_file = tmp_path / f"s3_{bucket.name.replace('-', '_')}.py"
        settings_file.write_text(
            "from tests.settings import *\n"
            f"STATICFILES_DIRS = [{str(source)!r}]\n"
            "STORAGES = {**STORAGES, 'staticfiles': {"
            f"'BACKEND': 'tests.storages.SlowS3Storage', 'OPTIONS': {options!r}}}}}\n"
        )
        env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
            "DJANGO_SETTINGS_MODULE": settings_file.stem,
            "SLOW_STORAGE_DELAY": delay,
        }
        argv = [sys.executable, "-m", "django", "collectstatic", "--noinput"]
        return [*argv, "--parallel", "8"], env

    argv, env = command(killed, "0")
    subprocess.run(argv, env=env, check=True, capture_output=True)
    s3_server.reset_requests()
    changed = {}
    for name in sorted(source.rglob("*.css"))[::3]:
        name.write_text(f"/* changed {name.name} */\n")
        changed[name.relative_to(source).as_posix()] = hashlib.md5(
            name.read_bytes()
        ).hexdigest()
    argv, env = command(killed, "0.5")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)

    def landed() -> int:
        etags = killed.etags()
        return sum(1 for key, md5 in changed.items() if etags.get(key) == md5)

    # Kill once a few changed files have landed, and before all of them have.
    wait_until(lambda: landed() >= 5, process)
    process.kill()
    process.wait(timeout=10)

    argv, env = command(killed, "0")
    s3_server.reset_requests()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    redone = [
        key
        for key in keys_of(s3_server.requests(), "PUT", killed.name)
        if key != LEASE_KEY
    ]
    argv, env = command(clean, "0")
    subprocess.run(argv, env=env, check=True, capture_output=True)

    assert killed.contents() == clean.contents() == read_tree(source)
    # The rerun redid only what the killed run had not finished.
    assert RECORD in redone
    assert 1 <= len(redone) - 1 < 27


def test_multipart_objects_are_skipped_through_the_record(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    from boto3.s3.transfer import TransferConfig

    big = write_tree(
        tmp_path / "src", {"big.js": b"x" * (6 * 1024 * 1024), "a.css": "a{}"}
    )
    settings.STATICFILES_DIRS = [str(big)]
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024)
    use(settings, bucket.storage(transfer_config=config))
    collect(bucket, parallel=4)
    # A multipart upload's ETag is not the content's MD5 ...
    assert "-" in bucket.etags()["big.js"]
    # ... yet the no-change re-run uploads nothing (but the lease): the
    # record knows.
    run = collect(bucket, parallel=4)
    assert run.kinds == leased({"GET": 1, "LIST": 1})
    assert run.stdout == "\n0 static files copied, 2 unmodified.\n"


def test_verify_compares_a_gz_file_by_its_own_bytes(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    from boto3.s3.transfer import TransferConfig

    # S3Storage sends a .gz file as it is, with Content-Encoding: gzip (the
    # name's guessed encoding), and multipart: only its bytes can tell.
    data = gzip.compress(random.Random(1).randbytes(6 * 1024 * 1024))
    source = write_tree(tmp_path / "src", {"big.js.gz": data, "a.css": "a{}"})
    settings.STATICFILES_DIRS = [str(source)]
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024)
    use(settings, bucket.storage(transfer_config=config))
    collect(bucket)
    assert "-" in bucket.etags()["big.js.gz"]
    run = collect(bucket, verify=True)
    assert run.stdout == "\n0 static files copied, 2 unmodified.\n"
    assert run.keys("PUT") == []


def test_a_location_with_a_trailing_slash_is_the_same_destination(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 5))]
    use(settings, bucket.storage(location="static", gzip=True))
    collect(bucket)
    use(settings, bucket.storage(location="static/", gzip=True))
    run = collect(bucket)  # gzipped: only the record can tell they are unchanged
    assert (run.stdout, run.stderr) == ("\n0 static files copied, 5 unmodified.\n", "")


def test_object_parameters_are_kept_on_upload(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    settings.STATICFILES_DIRS = [str(many(tmp_path / "src", 5))]
    use(
        settings,
        bucket.storage(object_parameters={"CacheControl": "max-age=31536000"}),
    )
    collect(bucket, parallel=4)
    head = bucket.client.head_object(Bucket=bucket.name, Key="d0/f0.css")
    assert head["CacheControl"] == "max-age=31536000"
    assert head["ContentType"] == "text/css"


def test_no_overwrite_storage_replaces_changed_files_under_their_names(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    source = many(tmp_path / "src", 5)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage(file_overwrite=False))
    collect(bucket)
    (source / "d1/f1.css").write_text("/* changed */\n")
    run = collect(bucket)
    # Without overwrite the old object is deleted first, so the new one keeps
    # its name (no "_abc123" suffix); the record is replaced in place by a
    # conditional PUT, not deleted.
    assert run.keys("DELETE") == ["d1/f1.css"]
    assert run.keys("PUT") == sorted([RECORD, "d1/f1.css"])
    assert sorted(bucket.contents()) == sorted(read_tree(source))
    assert bucket.contents()["d1/f1.css"] == b"/* changed */\n"


def test_delete_keeps_a_file_the_storage_saved_under_another_name(
    tmp_path: Path, settings: Any, bucket: Bucket
) -> None:
    """The storage saves 'Logo.SVG' as 'logo.svg' (stock accepts that): this
    run's own upload is neither stale nor "not ours"."""
    source = write_tree(tmp_path / "src", {"Logo.SVG": "<svg/>", "a.css": "a"})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, bucket.storage("tests.storages.LowercasingS3Storage"))
    collect(bucket)
    run = collect(bucket, delete=True, delete_unowned=True, verbosity=2)
    assert "Deleting stale" not in run.stdout
    assert run.keys("DELETE") == []
    assert sorted(bucket.contents()) == ["a.css", "logo.svg"]
    run = collect(bucket, delete=True)
    assert run.stderr == ""
