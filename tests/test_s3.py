"""S3 through django-storages against moto's server over HTTP on 127.0.0.1.

Requests are counted at the server, so the counts are exact.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .buckets import S3_MANIFEST, Bucket
from .conftest import read_tree, run_collectstatic, write_tree
from .servers.s3 import S3Server
from .storages import ObservedS3Storage

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server)


def use(settings: Any, storage: dict[str, Any]) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}


def collect_counting(bucket: Bucket, **options: Any) -> tuple[Counter[str], str]:
    bucket.server.reset_requests()
    result = run_collectstatic(**options)
    return bucket.server.counts(), result.stdout


def many(root: Path, count: int) -> Path:
    return write_tree(
        root, {f"d{i % 5}/f{i}.css": f".c{i} {{ color: red }}\n" for i in range(count)}
    )


@pytest.mark.parametrize("parallel", [None, 8])
def test_cold_upload_lands_every_file_with_one_head_and_one_put_each(
    sources: Path, settings: Any, bucket: Bucket, parallel: Any
) -> None:
    many(sources / "many", 40)
    use(settings, bucket.storage())
    counts, stdout = collect_counting(bucket, parallel=parallel)

    assert stdout == "\n47 static files copied.\n"
    assert counts == {"HEAD": 47, "PUT": 47}
    assert bucket.contents() == read_tree_visible(sources)
    assert bucket.etags() == {
        name: hashlib.md5(data).hexdigest()
        for name, data in read_tree_visible(sources).items()
    }


def read_tree_visible(root: Path) -> dict[str, bytes]:
    return {
        name: data
        for name, data in read_tree(root).items()
        if not name.startswith(".") and not name.endswith("~")
    }


COPIED_37 = "\n37 static files copied.\n"
UNMODIFIED_37 = "\n0 static files copied, 37 unmodified.\n"


def test_parallel_makes_no_more_requests_than_serial(
    sources: Path, settings: Any, s3_server: S3Server
) -> None:
    many(sources / "many", 30)
    runs = []
    for parallel in (None, 16):
        bucket = Bucket(s3_server)
        use(settings, bucket.storage())
        cold = collect_counting(bucket, parallel=parallel)
        warm = collect_counting(bucket, parallel=parallel)
        runs.append((cold, warm, bucket.contents()))
    (serial_cold, serial_warm, serial_bucket) = runs[0]
    (par_cold, par_warm, par_bucket) = runs[1]
    assert par_bucket == serial_bucket
    assert par_cold == serial_cold == ({"HEAD": 37, "PUT": 37}, COPIED_37)
    assert par_warm == serial_warm == ({"HEAD": 74}, UNMODIFIED_37)


def test_manifest_storage_parallel_equals_serial(
    tmp_path: Path, settings: Any, s3_server: S3Server
) -> None:
    source = write_tree(
        tmp_path / "src",
        {
            "css/a.css": "@import url('b.css');\np { background: url(../i/x.png) }\n",
            "css/b.css": "p { background: url('../i/y.png') }\n",
            "i/x.png": b"x" * 100,
            "i/y.png": b"y" * 100,
            "js/app.js": "console.log(1);\n",
        },
    )
    settings.STATICFILES_DIRS = [str(source)]
    runs = []
    for parallel in (None, 8):
        bucket = Bucket(s3_server)
        use(settings, bucket.storage(S3_MANIFEST))
        counts, stdout = collect_counting(bucket, parallel=parallel)
        runs.append((counts, stdout, bucket.contents()))
    assert runs[1][2] == runs[0][2]
    assert "staticfiles.json" in runs[1][2]
    assert runs[1][1] == runs[0][1] == "\n5 static files copied, 5 post-processed.\n"
    assert sum(runs[1][0].values()) <= sum(runs[0][0].values())


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
