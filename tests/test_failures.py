"""A destination that fails: one clear line, never a traceback, and soon.

Each case runs ``manage.py collectstatic`` in a process of its own, as a
deploy would, against the real servers (or a closed port on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from .buckets import Bucket
from .conftest import RECORD, many, read_tree, wait_until, write_tree
from .servers.latency_proxy import LatencyProxy
from .servers.s3 import S3Server

REPO = Path(__file__).resolve().parents[1]
#: A port nothing listens on.
CLOSED = "http://127.0.0.1:9"


def settings_file(
    tmp_path: Path, source: Path, storage: dict[str, Any], extra: str = ""
) -> str:
    module = f"failing_{abs(hash((str(tmp_path), str(storage)))) % 10**8}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *
            STATIC_ROOT = {str(tmp_path / "root")!r}
            STATICFILES_DIRS = [{str(source)!r}]
            STORAGES = {{**STORAGES, "staticfiles": {storage!r}}}
            """
        )
        + extra
    )
    return module


COLLECTSTATIC = [sys.executable, "-m", "django", "collectstatic", "--noinput"]


def cli(
    tmp_path: Path, module: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    environment = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": module,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    environment = {k: v for k, v in environment.items() if not k.startswith("AWS_ACC")}
    started = time.monotonic()
    result = subprocess.run(
        [*COLLECTSTATIC, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 3, lines
    return lines[-1]


S3_CLASSES = [
    "storages.backends.s3.S3Storage",
    "storages.backends.s3.S3ManifestStaticStorage",
]


#: What is wrong with an S3 storage's settings, and what its line names.
S3_PROBLEMS = {
    "no credentials": ({"access_key": None, "secret_key": None}, "NoCredentialsError"),
    "endpoint down": ({"endpoint_url": CLOSED}, "EndpointConnectionError"),
    "not an endpoint": ({"endpoint_url": "notaurl"}, "Invalid endpoint: notaurl"),
    "a URL for a bucket name": (  # botocore names the cause on a second line
        {"bucket_name": "s3://static"},
        'Parameter validation failed: Invalid bucket name "s3://static"',
    ),
}


@pytest.mark.s3
@pytest.mark.parametrize("backend", S3_CLASSES)
@pytest.mark.parametrize("problem", S3_PROBLEMS)
def test_s3_that_cannot_be_used_is_one_line_in_seconds(
    tmp_path: Path, s3_server: S3Server, backend: str, problem: str
) -> None:
    source = many(tmp_path / "src", 20)
    bucket = Bucket(s3_server)
    changed, cause = S3_PROBLEMS[problem]
    options = {**bucket.storage()["OPTIONS"], **changed}
    options = {key: value for key, value in options.items() if value is not None}
    module = settings_file(tmp_path, source, {"BACKEND": backend, "OPTIONS": options})
    result, seconds = cli(tmp_path, module, "--parallel", "8")
    line = one_line(result)
    assert line.startswith("CommandError: ") and cause in line, line
    assert seconds < 15
    # --traceback still shows where it came from.
    traced, _ = cli(tmp_path, module, "--traceback")
    assert "Traceback" in traced.stderr


@pytest.mark.s3
def test_refused_files_are_named_after_the_others_land_unless_none_is_accepted(
    tmp_path: Path, s3_server: S3Server
) -> None:
    # Three folders, in finder order: a policy denies the middle one.
    folders = {"a": 5, "private": 12, "z": 5}
    sources = [
        write_tree(tmp_path / name, {f"{name}/f{i:02}.css": "x" for i in range(n)})
        for name, n in folders.items()
    ]
    bucket = Bucket(s3_server)
    options = bucket.storage()["OPTIONS"]
    storage = {"BACKEND": "tests.storages.RefusingS3Storage", "OPTIONS": options}
    dirs = f"STATICFILES_DIRS = {[str(path) for path in sources]!r}\n"
    module = settings_file(tmp_path, sources[0], storage, extra=dirs)
    result, _ = cli(tmp_path, module, env={"REFUSE_ON": "private/"})
    refused = [f"private/f{i:02}.css" for i in range(12)]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "CommandError: 12 static files could not be collected: "
        f"{', '.join(refused[:10])} and 2 more."
    )
    assert result.stderr.splitlines()[0] == (
        "Could not collect 'private/f00.css': Writing 'private/f00.css': "
        "AccessDenied: ClientError: An error occurred (AccessDenied) when calling "
        "the PutObject operation: Access Denied. Check the destination's "
        "credentials, bucket and permissions."
    )
    assert len(result.stderr.splitlines()) == 13
    assert sorted(bucket.contents()) == [
        f"{name}/f{i:02}.css" for name in ("a", "z") for i in range(5)
    ]
    # Every file refused (wrong credentials, say): the run stops after ten.
    for path in tmp_path.glob("*/*/*.css"):
        path.write_text("changed")
    result, _ = cli(tmp_path, module, env={"REFUSE_ON": ".css"})
    line = one_line(result)
    assert re.sub(r"'[a-z]+/f\d\d.css'", "NAME", line) == (  # the tenth refused
        "CommandError: Writing NAME: AccessDenied: ClientError: An error "
        "occurred (AccessDenied) when calling the PutObject operation: Access "
        "Denied. Check the destination's credentials, bucket and permissions. "
        "10 files were refused like this and none accepted, so the run stopped; "
        "22 of 22 files were not collected."
    )


@pytest.mark.azure
@pytest.mark.parametrize(
    "backend",
    [
        "tests.azure_storages.QuickRetryAzureStorage",
        "tests.azure_storages.QuickRetryAzureManifestStorage",
    ],
)
@pytest.mark.parametrize("problem", ["wrong key", "endpoint down"])
def test_azure_that_cannot_be_used_is_one_line(
    tmp_path: Path, azurite: Any, backend: str, problem: str
) -> None:
    source = many(tmp_path / "src", 20)
    connection = azurite.connection_string
    if problem == "wrong key":
        key = connection.split("AccountKey=")[1].split(";")[0]
        connection = connection.replace(key, "d3Jvbmc=" * 8)
    else:
        connection = connection.replace(
            azurite.blob_endpoint, f"{CLOSED}/devstoreaccount1"
        )
    # The SDK retries a refused connection itself (about 80 s by default,
    # seconds here): the time shows we add no attempts of our own.
    options = {"connection_string": connection, "azure_container": "static"}
    module = settings_file(tmp_path, source, {"BACKEND": backend, "OPTIONS": options})
    result, seconds = cli(tmp_path, module)
    line = one_line(result)
    assert line.startswith("CommandError: "), line
    if problem == "wrong key":
        assert "failed to authenticate" in line, line
        # (A manifest storage fails as it is set up, before any call of ours.)
        assert "Manifest" in backend or line.endswith(
            "Check the destination's credentials, container and permissions."
        ), line
    else:
        # A manifest storage reads its manifest as it is set up.
        said = "could not be set up" if "Manifest" in backend else "cannot be reached"
        assert said in line and "ServiceRequestError: " in line, line
    assert seconds < 25


@pytest.mark.gcs
@pytest.mark.parametrize(
    "backend",
    [
        "storages.backends.gcloud.GoogleCloudStorage",
        "tests.gcs_storages.GCSManifestStorage",
    ],
)
def test_gcs_whose_endpoint_is_down_is_one_line(
    tmp_path: Path, gcs_server: Any, backend: str
) -> None:
    source = many(tmp_path / "src", 20)
    options = {"bucket_name": "static", "project_id": "test"}
    # The SDK retries a refused connection for 120 s by default, 3 s here:
    # the time shows we add no attempts of our own.
    quick = "from tests.gcs_storages import quick_sdk_retries\nquick_sdk_retries(3)\n"
    storage = {"BACKEND": backend, "OPTIONS": options}
    module = settings_file(tmp_path, source, storage, extra=quick)
    env = {"STORAGE_EMULATOR_HOST": CLOSED, "GOOGLE_CLOUD_PROJECT": "test"}
    result, seconds = cli(tmp_path, module, env=env)
    line = one_line(result)
    said = "could not be set up" if "Manifest" in backend else "cannot be reached"
    assert line.startswith("CommandError: ") and said in line, line
    assert "RetryError: " in line and "Connection refused" in line, line
    assert seconds < 25


def test_gcs_without_credentials_is_one_line(tmp_path: Path) -> None:
    """No emulator, no credentials file, a metadata server that is down."""
    source = many(tmp_path / "src", 5)
    options = {"bucket_name": "static", "project_id": "test"}
    storage = {"BACKEND": "storages.backends.gcloud.GoogleCloudStorage"}
    module = settings_file(tmp_path, source, {**storage, "OPTIONS": options})
    env = {
        "STORAGE_EMULATOR_HOST": "",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }
    result, _ = cli(tmp_path, module, env=env)
    line = one_line(result)
    assert line.startswith(
        "CommandError: The static files storage "
        "(storages.backends.gcloud.GoogleCloudStorage) could not be set up: "
        "DefaultCredentialsError: "
    ), line


@pytest.mark.gcs
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_gcs_bucket_that_does_not_exist_is_one_line_with_what_to_check(
    tmp_path: Path, gcs_server: Any, dry_run: bool
) -> None:
    source = many(tmp_path / "src", 5)
    options = {"bucket_name": "no-such-bucket", "project_id": "test"}
    storage = {"BACKEND": "storages.backends.gcloud.GoogleCloudStorage"}
    module = settings_file(tmp_path, source, {**storage, "OPTIONS": options})
    env = {"STORAGE_EMULATOR_HOST": gcs_server.endpoint_url}
    result, _ = cli(tmp_path, module, *(["--dry-run"] if dry_run else []), env=env)
    line = one_line(result)
    assert "NotFound: 404" in line, line
    assert line.endswith(
        "Check the destination's credentials, bucket and permissions."
    ), line


@pytest.mark.s3
def test_a_destination_that_dies_mid_upload_stops_the_run_in_seconds(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """The server goes away (its proxy stops) during the upload: the run
    stops within seconds with one line saying so and how many files are left;
    once it is back, the next run finishes the job."""
    source = many(tmp_path / "src", 200)
    bucket = Bucket(s3_server)
    proxy = LatencyProxy(s3_server.port, 0).start()
    options = {**bucket.storage()["OPTIONS"], "endpoint_url": proxy.endpoint_url}
    storage = {"BACKEND": "tests.storages.SlowS3Storage", "OPTIONS": options}
    module = settings_file(tmp_path, source, storage)
    environment = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": module,
        # 200 files take 5 s to upload: a loaded machine still stops the
        # proxy mid-upload (at 0.05 s a CI run once finished first).
        "SLOW_STORAGE_DELAY": "0.2",
    }
    process = subprocess.Popen(
        [*COLLECTSTATIC, "--parallel", "8"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: len(bucket.contents()) >= 20, process)
    port = proxy.port
    proxy.stop()
    stopped = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - stopped < 15
    assert process.returncode == 1
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) <= 10, lines
    assert "cannot be reached" in lines[-1] and "files were not collected" in lines[-1]

    proxy = LatencyProxy(s3_server.port, 0, port=port).start()
    try:
        finished = subprocess.run(
            [*COLLECTSTATIC, "--parallel", "8"],
            env={**environment, "SLOW_STORAGE_DELAY": "0"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proxy.stop()
    assert finished.returncode == 0, finished.stderr
    assert bucket.contents() == read_tree(source)


def test_a_stale_file_that_cannot_be_deleted_is_one_line_and_the_others_go(
    tmp_path: Path,
) -> None:
    files = {"a.css": "a", "old-1.css": "1", "old-2.css": "2"}
    source = write_tree(tmp_path / "src", files)
    module = settings_file(
        tmp_path, source, {"BACKEND": "tests.storages.FailingStorage"}
    )
    assert cli(tmp_path, module)[0].returncode == 0
    (source / "old-1.css").unlink()
    (source / "old-2.css").unlink()

    result, _ = cli(tmp_path, module, "--delete", env={"FAIL_ON": "old-1"})

    assert one_line(result) == (
        "CommandError: Deleting stale files: 1 of 2 files could not be deleted: "
        "'old-1.css' (OSError: simulated failure deleting old-1.css)."
    )
    root = tmp_path / "root"
    assert sorted(read_tree(root)) == ["a.css", "old-1.css"]
    # The record claims what is still there (a storage that cannot list
    # would trust it), and no more; old-2.css's deletion is said.
    record = json.loads((root / RECORD).read_text())
    assert sorted(row[0] for row in record["files"]) == ["a.css", "old-1.css"]
    assert result.stdout == "Deleting stale 'old-2.css'\n"
    # Still this package's: the next run deletes it.
    result, _ = cli(tmp_path, module, "--delete")
    assert result.returncode == 0, result.stderr
    assert sorted(read_tree(root)) == ["a.css"]


def test_a_delete_failure_names_ten_files_and_counts_the_rest() -> None:
    from collectstatic_plus.backends.base import DeleteFailed

    failures = [(f"f{i}.css", "403 Forbidden") for i in range(12)]
    named = ", ".join(f"'f{i}.css' (403 Forbidden)" for i in range(10))
    assert str(DeleteFailed(failures)) == (
        f"could not delete 12 file(s): {named} and 2 more"
    )
    assert str(DeleteFailed(failures[:10])) == f"could not delete 10 file(s): {named}"
