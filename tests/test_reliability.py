"""Retries, permanent errors, interrupts and bad input: clear and bounded."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from django.core.files.storage import FileSystemStorage, Storage
from django.core.management import CommandError, call_command

from collectstatic_plus.backends.base import Backend
from collectstatic_plus.backends.s3 import S3Backend
from collectstatic_plus.retry import PermanentError, Retry, Throttle, Unreachable

from .buckets import Bucket
from .conftest import (
    RECORD,
    read_tree,
    record_files,
    run_collectstatic,
    wait_until,
    write_tree,
)
from .servers.s3 import S3Server

REPO = Path(__file__).resolve().parents[1]


def client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error(503, "SlowDown"), "throttled"),
        (client_error(500, "InternalError"), "transient"),
        (client_error(504, "GatewayTimeout"), "transient"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "unreachable"),
        (ConnectionResetError(), "unreachable"),
        (client_error(403, "AccessDenied"), "permanent"),
        (client_error(404, "NoSuchBucket"), "permanent"),
        (NoCredentialsError(), "permanent"),
        (client_error(400, "InvalidRequest"), "other"),
        (ValueError("bad"), "other"),
    ],
)
def test_s3_errors_are_classified(error: Exception, kind: str) -> None:
    assert S3Backend(Storage()).classify(error) == kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(), "unreachable"),
        (TimeoutError(), "unreachable"),
        (BrokenPipeError(), "transient"),
        (client_error(503, "SlowDown"), "other"),  # botocore's: the S3 backend's
        (ValueError("bad"), "other"),
    ],
)
def test_any_storage_retries_only_network_errors(error: Exception, kind: str) -> None:
    assert Backend(Storage()).classify(error) == kind


S3_ERRORS = S3Backend(Storage())


class Patient(S3Backend):
    """A backend whose SDK retries a refused connection for long itself."""

    sdk_retries_connections = True


@pytest.mark.parametrize(("errors", "calls"), [(S3_ERRORS, 6), (Patient(Storage()), 1)])
def test_the_circuit_breaker_opens_after_failures_to_connect_in_a_row(
    errors: Backend, calls: int
) -> None:
    """Six in a row (one if the SDK already retried): every later call fails
    at once, without calling the storage, and names the destination."""
    retry = Retry(attempts=4, sleep=lambda _: None, errors=errors)
    made: list[str] = []

    def refused() -> None:
        made.append("call")
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    with pytest.raises(Unreachable) as raised:
        for n in range(10):
            with contextlib.suppress(ConnectionRefusedError):
                retry(f"Writing 'f{n}.css'", refused)
    assert len(made) == calls
    assert str(raised.value) == (
        "The destination (Storage) cannot be reached: "
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    with pytest.raises(Unreachable):
        retry("Writing 'later.css'", refused)
    assert len(made) == calls


def test_a_success_closes_the_count_of_failures_to_connect() -> None:
    retry = Retry(attempts=1, sleep=lambda _: None, errors=S3_ERRORS)

    def refused() -> None:
        raise ConnectionRefusedError("refused")

    for _ in range(3):
        for _ in range(5):
            with pytest.raises(ConnectionRefusedError):
                retry("Writing 'a.css'", refused)
        assert retry("Writing 'b.css'", lambda: "ok") == "ok"


def test_transient_failures_are_retried_with_growing_jittered_delays() -> None:
    delays: list[float] = []
    retry = Retry(attempts=4, base=0.1, cap=5, sleep=delays.append, errors=S3_ERRORS)
    failures = [client_error(500, "InternalError")] * 3

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "done"

    assert retry("Writing 'a.css'", flaky) == "done"
    assert retry.retried == 3
    # Exponential: 0.1, 0.2, 0.4 seconds, each with +-50 % jitter.
    for delay, base in zip(delays, (0.1, 0.2, 0.4), strict=True):
        assert 0.5 * base <= delay <= 1.5 * base


def test_writing_a_large_record_holds_little_more_than_its_bytes() -> None:
    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.digest import Digest
    from collectstatic_plus.record import Entry, Record

    files = {
        f"app/css/file-{i:05}.css": Entry(
            Digest("0" * 32, i), 2**59, Remote(i, "e" * 32)
        )
        for i in range(20_000)
    }
    record = Record("f" * 64, files=files)
    buffer = io.BytesIO()
    tracemalloc.start()
    try:
        record.write(buffer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    written = buffer.getvalue()
    assert record_files(json.loads(written))["app/css/file-00007.css"] == {
        "md5": "0" * 32,
        "size": 7,
        "source": 2**59,
        "seen": {"size": 7, "etag": "e" * 32},
    }
    # Entry by entry into the buffer: building the document as dicts and one
    # string first peaked at about ten times the record's size.
    assert peak < 1.5 * len(written)


def test_a_no_change_record_holds_each_path_and_entry_once(tmp_path: Path) -> None:
    """The record and the listing are keyed by the sources' own path strings,
    a recorded digest is the source's, and an unchanged file's next entry is
    the previous entry itself (memory: one copy per file, not three)."""
    from django.core.files.storage import FileSystemStorage

    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.backends.local import LocalBackend
    from collectstatic_plus.digest import Digest
    from collectstatic_plus.plan import Knowledge, recorded_digest
    from collectstatic_plus.record import Entry, Record
    from collectstatic_plus.recorder import Recorder, same_content
    from collectstatic_plus.sources import Source, keyed_by_sources

    storage = FileSystemStorage(location=str(tmp_path))
    sources = {}
    for i in range(3):
        path = f"css/file-{i}.css"
        sources[path] = Source(path, path, storage, "test", token=100 + i)
    seen = Remote(7, None, 5)
    copy = "".join  # an equal string that is another object
    previous = Record(
        "f" * 64,
        files={
            copy(["css/", f"file-{i}.css"]): Entry(Digest("a" * 32, 7), 100 + i, seen)
            for i in range(3)
        }
        | {"gone.css": Entry(Digest("b" * 32, 1))},
    )
    listing = {copy(["css/", f"file-{i}.css"]): seen for i in range(3)}
    previous.files = keyed_by_sources(previous.files, sources)
    listing = keyed_by_sources(listing, sources)
    assert list(previous.files) == [*sources, "gone.css"]
    for path, source in sources.items():
        assert next(k for k in previous.files if k == path) is source.prefixed_path
        assert next(k for k in listing if k == path) is source.prefixed_path
    known = Knowledge(listing, previous)
    for path, source in sources.items():
        source.digest = recorded_digest(source, known)
        assert source.digest is previous.files[path].digest

    recorder = Recorder(LocalBackend(storage), Retry(attempts=1), RECORD, print)
    kept = set(sources)
    new = recorder.next(sources, previous, listing, {}, kept, [], {}, {})
    assert list(new.files) == list(sources)  # gone.css is not in the listing
    for path in sources:
        assert new.files[path] is previous.files[path]
    assert same_content(new, previous) is False  # gone.css left the record


def test_a_read_record_holds_each_repeated_string_once(tmp_path: Path) -> None:
    """Read with the sources' paths, a record keys its rows and names its
    references with the sources' own strings; a processed row's MD5 is its
    file entry's string, and its hashed name is the string its outputs and
    the last manifest hold (memory: a third less per file)."""
    import io

    from django.core.files.storage import FileSystemStorage

    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.digest import Digest
    from collectstatic_plus.record import Entry, Processed, Record, parse, read
    from collectstatic_plus.sources import Source, own_path

    storage = FileSystemStorage(location=str(tmp_path))
    sources = {
        path: Source(path, path, storage, "test")
        for path in ("".join(["css/", "a.css"]), "".join(["img/", "b.png"]))
    }
    hashed = "css/a.0123456789ab.css"
    seen = Remote(70000, None, 5)
    record = Record(
        "f" * 64,
        files={
            "css/a.css": Entry(Digest("a" * 32, 70000), 1, seen),
            "img/b.png": Entry(Digest("b" * 32, 9), 2, Remote(9, None, 5)),
        },
        manifests=[[hashed, "img/b.ba9876543210.png"]],
        processed={
            "css/a.css": Processed(
                "a" * 32, hashed, ("img/b.png",), (hashed, f"{hashed}.gz")
            )
        },
    )
    out = io.BytesIO()
    record.write(out)
    data = out.getvalue()
    assert data.count(hashed.encode()) == 4  # the row, outputs (2), manifest
    own = own_path(sources)
    for back in (
        read(io.BytesIO(data), "f" * 64, own),
        parse(data.replace(b"\n", b""), "f" * 64, own),
    ):
        assert back == record
        for section in (back.files, back.processed):
            for path in section:
                assert path is sources[path].prefixed_path
        entry, row = back.files["css/a.css"], back.processed["css/a.css"]
        assert row.refs[0] is sources["img/b.png"].prefixed_path
        assert row.md5 is entry.md5
        assert row.outputs[0] is row.hashed
        assert back.manifests[0][0] is row.hashed


def test_a_gzipped_record_never_unpacks_past_a_records_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record a gzipping storage saved is unpacked, up to the limit a record
    may hold; beyond it (a small upload that unpacks into gigabytes) it is
    not trusted."""
    import gzip

    from collectstatic_plus import recorder
    from collectstatic_plus.record import RecordError

    monkeypatch.setattr(recorder, "MAX_BYTES", 1000)
    assert recorder.gunzipped(gzip.compress(b"x" * 1000)) == b"x" * 1000
    with pytest.raises(RecordError, match="larger than 1000 bytes"):
        recorder.gunzipped(gzip.compress(b"x" * 1001))


def test_saving_a_large_record_spools_it_to_disk(tmp_path: Path) -> None:
    from django.core.files.storage import FileSystemStorage

    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.backends.local import LocalBackend
    from collectstatic_plus.digest import Digest
    from collectstatic_plus.record import Entry, Record
    from collectstatic_plus.recorder import SPOOL_BYTES, Recorder

    files = {
        f"app/css/file-{i:05}.css": Entry(
            Digest("0" * 32, i), 2**59, Remote(i, None, i)
        )
        for i in range(30_000)
    }
    record = Record("f" * 64, files=files)
    buffer = io.BytesIO()
    record.write(buffer)
    expected = buffer.getvalue()
    assert len(expected) > 2 * SPOOL_BYTES
    backend = LocalBackend(FileSystemStorage(location=str(tmp_path)))
    recorder = Recorder(backend, Retry(attempts=1), RECORD, print)
    tracemalloc.start()
    try:
        recorder.save(record, None, complete=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / RECORD).read_bytes() == expected
    assert os.listdir(tmp_path) == [RECORD]  # the temporary was renamed over it
    assert peak < SPOOL_BYTES + 512 * 1024  # not the whole record in memory


def test_retries_are_bounded() -> None:
    retry = Retry(attempts=3, sleep=lambda _: None, errors=S3_ERRORS)
    calls = []

    def always() -> None:
        calls.append(1)
        raise client_error(503, "SlowDown")

    with pytest.raises(ClientError):
        retry("x", always)
    assert len(calls) == 3


def test_permanent_errors_stop_at_once_with_one_message() -> None:
    retry = Retry(attempts=5, sleep=lambda _: None, errors=S3_ERRORS)
    calls = []

    def denied() -> None:
        calls.append(1)
        raise client_error(403, "AccessDenied")

    with pytest.raises(PermanentError) as raised:
        retry("Writing 'a.css'", denied)
    assert len(calls) == 1
    assert str(raised.value).startswith("Writing 'a.css': AccessDenied: ")


def test_throttle_halves_on_slowdown_and_grows_back() -> None:
    throttle = Throttle(16)
    throttle.throttled()
    throttle.throttled()
    assert throttle.limit == 4
    for _ in range(40):
        throttle.succeeded()
    assert throttle.limit == 6


def settings_module(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    (tmp_path / f"{name}.py").write_text(
        "from tests.settings import *\n" + textwrap.dedent(body)
    )
    return {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": name,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", *args],
        env={k: v for k, v in env.items() if not k.startswith("AWS_ACCESS")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_static_root_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a{}"})
    env = settings_module(
        tmp_path, "no_root", f"STATICFILES_DIRS = [{str(source)!r}]\n"
    )
    result = cli(env)
    assert result.returncode == 1
    assert result.stderr == (
        "CommandError: You're using the staticfiles app without having set the "
        "STATIC_ROOT setting to a filesystem path.\n"
    )


def test_without_the_staticfiles_app_a_run_that_skips_checks_is_one_line(
    tmp_path: Path,
) -> None:
    env = settings_module(
        tmp_path,
        "no_staticfiles",
        """
        STATIC_ROOT = "/tmp/never"
        INSTALLED_APPS = ["collectstatic_plus"]
        """,
    )
    result = cli(env, "--skip-checks")
    assert (result.returncode, result.stderr) == (
        1,
        "CommandError: collectstatic_plus needs django.contrib.staticfiles in "
        "INSTALLED_APPS.\n",
    )


def test_our_command_listed_after_stocks_app_still_runs_when_called_itself(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    from collectstatic_plus.management.commands.collectstatic import Command

    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    settings.INSTALLED_APPS = [
        app for app in settings.INSTALLED_APPS if app != "collectstatic_plus"
    ] + ["collectstatic_plus"]  # (E001 says so; a project may call it itself)
    call_command(Command(), interactive=False, verbosity=0)
    assert (static_root / "a.css").read_text() == "a"


def test_clear_on_local_disk_deletes_an_odd_name_without_a_word(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    write_tree(static_root, {"odd\\name.css": "x"})  # (stock's clear_dir: gone)
    run = run_collectstatic(clear=True, verbosity=1)
    assert run.stderr == ""
    assert sorted(read_tree(static_root)) == ["a.css"]


def test_storage_that_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    env = settings_module(
        tmp_path,
        "bad_backend",
        """
        STATIC_ROOT = "/tmp/never"
        STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "nowhere.Storage"}}
        """,
    )
    result = cli(env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "CommandError: Could not find backend 'nowhere.Storage'"
    )


def test_a_storage_that_cannot_be_built_is_one_line(settings: Any) -> None:
    backend = "tests.storages.UnbuildableStorage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value) == (
        f"The static files storage ({backend}) could not be set up: "
        "NotImplementedError: this storage needs an option"
    )


def test_static_root_that_is_a_file_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    source = write_tree(tmp_path / "src", {"a.css": "a{}", "b.js": "1"})
    env = settings_module(
        tmp_path,
        "root_is_file",
        f"""
        STATIC_ROOT = {str(tmp_path / "taken" / "static")!r}
        STATICFILES_DIRS = [{str(source)!r}]
        """,
    )
    result = cli(env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # The lease, beside the record, is the first thing written there.
    assert result.stderr.splitlines() == [
        "CommandError: Could not take the lease on the destination: "
        "NotADirectoryError: [Errno 20] Not a directory: "
        f"'{tmp_path / 'taken' / 'static'}'"
    ]


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("problem", ["no credentials", "no bucket"])
def test_s3_permanent_errors_stop_with_one_message(
    tmp_path: Path, s3_server: S3Server, problem: str, dry_run: bool
) -> None:
    source = write_tree(tmp_path / "src", {f"f{i}.css": f"a{i}{{}}" for i in range(30)})
    options: dict[str, Any] = {
        "bucket_name": "no-such-bucket"
        if problem == "no bucket"
        else Bucket(s3_server).name,
        "endpoint_url": s3_server.endpoint_url,
        "region_name": "us-east-1",
    }
    if problem == "no bucket":
        options.update(access_key="testing", secret_key="testing")
    env = settings_module(
        tmp_path,
        "s3_problem",
        f"""
        STATICFILES_DIRS = [{str(source)!r}]
        STORAGES = {{**STORAGES, "staticfiles": {{
            "BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {options!r}}}}}
        """,
    )
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    result = cli(env, "--parallel", "8", *(["--dry-run"] if dry_run else []))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    expected = "NoSuchBucket" if problem == "no bucket" else "NoCredentialsError"
    # (A dry run takes no lease: the listing is its first request.)
    step = "Listing the destination" if dry_run else "Taking the lease"
    assert lines[0].startswith(f"CommandError: {step}: {expected}")
    assert result.stdout == ""  # no plan was made: none is printed


def test_path_escaping_the_destination_is_refused_and_named(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"ok.css": "a{}"}))]
    settings.STATICFILES_FINDERS = [
        *settings.STATICFILES_FINDERS,
        "tests.finders.EscapingFinder",
    ]
    with pytest.raises(CommandError) as raised:
        run_collectstatic(parallel=4)
    assert str(raised.value) == "1 static file could not be collected: ../escape.css."
    assert not (tmp_path / "escape.css").exists()
    assert (static_root / "ok.css").exists()


@pytest.mark.parametrize("options", [{}, {"parallel": 4}, {"dry_run": True}])
def test_broken_symlink_in_sources_is_named_as_one_with_its_target(
    tmp_path: Path, settings: Any, static_root: Path, options: dict[str, Any]
) -> None:
    source = write_tree(tmp_path / "src", {"ok.css": "a{}"})
    (source / "gone.css").symlink_to(tmp_path / "missing.css")
    settings.STATICFILES_DIRS = [str(source)]
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr, **options)
    assert str(raised.value) == "1 static file could not be collected: gone.css."
    assert stderr.getvalue() == (
        f"Could not collect 'gone.css': '{source / 'gone.css'}' is a broken "
        f"symbolic link (to '{tmp_path / 'missing.css'}')\n"
    )
    assert (static_root / "ok.css").exists() is not options.get("dry_run", False)


@pytest.mark.parametrize("options", [{}, {"parallel": 4}])
def test_a_source_unreadable_on_a_later_run_fails_after_the_others_are_copied(
    tmp_path: Path, settings: Any, static_root: Path, options: dict[str, Any]
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a1", "b.css": "b1", "c.css": "c1"})
    settings.STATICFILES_DIRS = [str(source)]
    run_collectstatic(**options)
    write_tree(source, {"a.css": "a2", "c.css": "c2"})
    (source / "b.css").unlink()
    (source / "b.css").symlink_to(tmp_path / "missing.css")  # read to decide
    with pytest.raises(CommandError) as raised:
        run_collectstatic(**options)
    assert str(raised.value) == "1 static file could not be collected: b.css."
    assert read_tree(static_root) == {"a.css": b"a2", "b.css": b"b1", "c.css": b"c2"}
    (source / "b.css").unlink()
    (source / "b.css").write_text("b2")
    summary = f"\n1 static file copied to '{static_root}', 2 unmodified.\n"
    assert run_collectstatic().stdout == summary  # a and c recorded as copied
    assert read_tree(static_root) == {"a.css": b"a2", "b.css": b"b2", "c.css": b"c2"}


def test_a_folder_where_a_file_goes_fails_that_file_and_leaves_no_other_copy(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a1", "b.css": "b1"})
    settings.STATICFILES_DIRS = [str(source)]
    write_tree(static_root, {"b.css/x/keep.me": "theirs"})
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr)
    assert str(raised.value) == "1 static file could not be collected: b.css."
    assert re.fullmatch(
        r"Could not collect 'b\.css': IsADirectoryError: a folder is there: the "
        r"storage saved the file as 'b_\w{7}\.css' \(deleted again\)\n",
        stderr.getvalue(),
    ), stderr.getvalue()
    assert sorted(read_tree(static_root)) == ["a.css", "b.css/x/keep.me"]
    record = record_files(json.loads((static_root / RECORD).read_bytes()))
    assert sorted(record) == ["a.css"]


def test_a_symlink_that_loops_is_one_line_before_anything_is_written(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "src", {"ok.css": "a{}", "sub/x.css": "x"})
    (source / "self.css").symlink_to("self.css")
    settings.STATICFILES_DIRS = [str(source)]
    with pytest.raises(CommandError) as raised:
        run_collectstatic(verbosity=0)
    assert str(raised.value) == (
        f"Could not list '{source}': [Errno 40] Too many levels of symbolic "
        f"links: '{source / 'self.css'}'"
    )
    (source / "self.css").unlink()
    (source / "sub" / "up").symlink_to("..", target_is_directory=True)
    with pytest.raises(CommandError) as raised:
        run_collectstatic(verbosity=0)
    assert str(raised.value).startswith(f"Could not list '{source}/sub/up/sub/up/")
    assert not static_root.exists()


NAMES = ["with space.css", "café/ünï.js", "100%.css", "a+b&c=d.js", "q?x#y.css"]


def test_awkward_names_round_trip_locally(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "src", {name: f"/* {name} */" for name in NAMES})
    settings.STATICFILES_DIRS = [str(source)]
    run_collectstatic(parallel=4)
    assert read_tree(static_root) == read_tree(source)
    assert "5 unmodified" in run_collectstatic().stdout


def test_awkward_names_round_trip_on_s3(
    tmp_path: Path, settings: Any, s3_server: S3Server
) -> None:
    source = write_tree(tmp_path / "src", {name: f"/* {name} */" for name in NAMES})
    settings.STATICFILES_DIRS = [str(source)]
    bucket = Bucket(s3_server)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": bucket.storage()}
    run_collectstatic(parallel=4)
    assert bucket.contents() == read_tree(source)
    s3_server.reset_requests()
    assert run_collectstatic().stdout == "\n0 static files copied, 5 unmodified.\n"
    written = [r for r in s3_server.requests() if r.startswith("PUT")]
    assert written == [f"PUT /{bucket.name}/{RECORD}.lease"]


def test_sigterm_stops_cleanly_and_records_only_what_landed(tmp_path: Path) -> None:
    source = write_tree(
        tmp_path / "src", {f"d/f{i}.js": f"var f{i};" for i in range(200)}
    )
    root = tmp_path / "root"
    env = settings_module(
        tmp_path,
        "sigterm_settings",
        f"""
        STATIC_ROOT = {str(root)!r}
        STATICFILES_DIRS = [{str(source)!r}]
        STORAGES = {{**STORAGES, "staticfiles": {{
            "BACKEND": "tests.storages.SlowStorage"}}}}
        """,
    )
    env["SLOW_STORAGE_DELAY"] = "0.1"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "collectstatic",
            "--noinput",
            "--parallel",
            "4",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: root.exists() and len(read_tree(root)) >= 10, process)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in err
    landed = read_tree(root)
    record = json.loads((root / RECORD).read_bytes())
    assert sorted(record_files(record)) == sorted(landed)
    assert 10 <= len(landed) < 200


def test_sigterm_at_the_prompt_ends_the_process_as_stocks_does(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a"})
    root = write_tree(tmp_path / "root", {"old.css": "old"})  # (or no prompt)
    env = settings_module(
        tmp_path,
        "prompt_settings",
        f"""
        STATIC_ROOT = {str(root)!r}
        STATICFILES_DIRS = [{str(source)!r}]
        """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "collectstatic"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    while not seen.endswith("or 'no' to cancel: "):
        seen += (char := process.stdout.read(1))
        assert char, process.communicate()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (-signal.SIGTERM, "", "")
    assert read_tree(root) == {"old.css": b"old"}


def test_an_interrupt_while_the_record_is_saved_leaves_no_part_of_it(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    root = tmp_path / "root"
    settings.STATIC_ROOT = str(root)
    save = FileSystemStorage._save

    def interrupted(self: FileSystemStorage, name: str, content: Any) -> str:
        saved: str = save(self, name, content)
        if name.endswith(".tmp"):  # as if Ctrl-C came as it was written
            raise KeyboardInterrupt
        return saved

    monkeypatch.setattr(FileSystemStorage, "_save", interrupted)
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert raised.value.returncode == 130
    assert sorted(p.name for p in root.iterdir()) == ["a.css"]


@pytest.mark.parametrize(
    "backend",
    [
        "django.contrib.staticfiles.storage.StaticFilesStorage",
        "tests.storages.RemoteLikeStorage",
    ],
)
def test_an_interrupted_delete_leaves_no_claim_of_what_it_deleted(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Ctrl-C after --delete removed one stale file: the record does not
    claim it (on a storage that cannot list, that claim was all the next run
    had), so when it comes back with the same bytes it is copied again; the
    stale file not reached is still ours for the next --delete."""
    from django.utils.module_loading import import_string

    files = {"a.css": "a", "gone.css": "body{}", "old.css": "old"}
    source = write_tree(tmp_path / "src", files)
    root = tmp_path / "root"
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(root)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    run_collectstatic()
    (source / "gone.css").unlink()
    (source / "old.css").unlink()
    storage = import_string(backend)
    delete = storage.delete
    deleted: list[str] = []

    def interrupted(self: Storage, name: str) -> None:
        if name in files:  # (not the record or the lease)
            if deleted:  # as if Ctrl-C came after the first delete
                raise KeyboardInterrupt
            deleted.append(name)
        delete(self, name)

    monkeypatch.setattr(storage, "delete", interrupted)
    with pytest.raises(CommandError) as raised:
        run_collectstatic(delete=True)
    assert raised.value.returncode == 130
    monkeypatch.setattr(storage, "delete", delete)
    assert deleted == ["gone.css"]
    assert read_tree(root) == {"a.css": b"a", "old.css": b"old"}
    record = record_files(json.loads((root / RECORD).read_bytes()))
    assert "gone.css" not in record

    write_tree(source, {"gone.css": "body{}"})  # back, with the same bytes
    assert "1 static file copied" in run_collectstatic().stdout
    assert (root / "gone.css").read_bytes() == b"body{}"
    run_collectstatic(delete=True)  # old.css: still ours, and stale
    assert read_tree(root) == {"a.css": b"a", "gone.css": b"body{}"}


def test_an_interrupt_as_the_record_is_rewritten_after_delete_claims_none_deleted(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C as the record is rewritten without what --delete removed: the
    record left does not claim the deleted file either."""
    source = write_tree(tmp_path / "src", {"a.css": "a", "gone.css": "body{}"})
    root = tmp_path / "root"
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(root)
    run_collectstatic()
    (source / "gone.css").unlink()
    save = FileSystemStorage._save
    records: list[str] = []

    def interrupted(self: FileSystemStorage, name: str, content: Any) -> str:
        saved: str = save(self, name, content)
        if name.endswith(".tmp"):
            records.append(name)
            if len(records) == 1:  # the rewrite after the deletion (the run's
                raise KeyboardInterrupt  # own record is not new: not written)
        return saved

    monkeypatch.setattr(FileSystemStorage, "_save", interrupted)
    with pytest.raises(CommandError) as raised:
        run_collectstatic(delete=True)
    assert raised.value.returncode == 130
    assert "gone.css" not in record_files(json.loads((root / RECORD).read_bytes()))
    assert read_tree(root) == {"a.css": b"a"}
    assert len(records) == 2  # the rewrite, and the one after Ctrl-C


def test_a_listing_that_fails_as_the_record_is_made_still_names_the_failed_file(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collectstatic_plus.backends.local import LocalBackend

    source = write_tree(tmp_path / "src", {"a.css": "a", "b.css": "b", "bad.css": "x"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(tmp_path / "root")
    failing = {"BACKEND": "tests.storages.FailingStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": failing}
    monkeypatch.setenv("FAIL_ON", "bad")
    # As on GCS and Azure, a save does not say what a listing then shows, so
    # the record lists the destination again: here that listing fails.
    monkeypatch.setattr(LocalBackend, "saved", lambda self, name, content: None)
    listed = LocalBackend.listing
    calls: list[int] = []

    def listing(self: LocalBackend) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("listing refused")
        return listed(self)

    monkeypatch.setattr(LocalBackend, "listing", listing)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr)

    assert str(raised.value) == "1 static file could not be collected: bad.css."
    assert stderr.getvalue().splitlines() == [
        "Could not list the destination again for the sync record (OSError: "
        "listing refused); the files written are recorded as unseen.",
        "Could not collect 'bad.css': OSError: simulated failure writing bad.css",
    ]
    # What landed, and nothing seen of it (no "seen"): compared by content.
    record = record_files(json.loads((tmp_path / "root" / RECORD).read_bytes()))
    assert {
        name: (row["md5"], row["size"], "seen" in row) for name, row in record.items()
    } == {
        name: (hashlib.md5(data).hexdigest(), 1, False)
        for name, data in (("a.css", b"a"), ("b.css", b"b"))
    }


def test_a_record_storage_that_cannot_be_built_is_one_line(
    tmp_path: Path, settings: Any
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    settings.STATIC_ROOT = str(tmp_path / "root")
    records: dict[str, Any] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"bogus": 1},
    }
    settings.STORAGES = {**settings.STORAGES, "records": records}
    settings.COLLECTSTATIC_PLUS = {"RECORD_STORAGE": "records"}
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value) == (
        "The sync record's storage ('records', RECORD_STORAGE) could not be set "
        "up: TypeError: FileSystemStorage.__init__() got an unexpected keyword "
        "argument 'bogus'"
    )
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(
    ("location", "record_name", "said"),
    [
        (
            "src/meta",
            "sync.json",
            "is inside the static files folder '{tmp}/src': the record would "
            "be collected. Give it a place outside.",
        ),
        (
            "",
            "root/sync.json",
            "is inside the destination: the record would be 'sync.json' there, "
            "served, and deleted by --clear and --delete-unowned. Give it a "
            "place outside.",
        ),
    ],
)
def test_a_record_storage_where_the_record_is_collected_or_served_is_refused(
    tmp_path: Path, settings: Any, location: str, record_name: str, said: str
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    settings.STATIC_ROOT = str(tmp_path / "root")
    records = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / location)},
    }
    settings.STORAGES = {**settings.STORAGES, "records": records}
    settings.COLLECTSTATIC_PLUS = {
        "RECORD_STORAGE": "records",
        "RECORD_NAME": record_name,
    }
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value) == (
        "The sync record's storage ('records', RECORD_STORAGE) "
        + said.format(tmp=tmp_path)
    )
    assert not (tmp_path / "root").exists()


def test_a_record_that_cannot_be_renamed_into_place_leaves_no_temporary(
    tmp_path: Path, settings: Any
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    root = tmp_path / "root"
    settings.STATIC_ROOT = str(root)
    (root / RECORD).mkdir(parents=True)  # the rename over it fails
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value).startswith(
        "Could not write the sync record: IsADirectoryError: [Errno 21] Is a directory:"
    )
    assert sorted(p.name for p in root.iterdir()) == [RECORD, "a.css"]


def test_a_record_storage_is_inside_the_destination_only_where_it_writes_there(
    tmp_path: Path,
) -> None:
    from storages.backends.azure_storage import AzureStorage
    from storages.backends.s3 import S3Storage

    from collectstatic_plus.backends import backend_for

    def inside(destination: Any, record: Any) -> str | None:
        return backend_for(destination).inside(backend_for(record))

    local = FileSystemStorage
    root = str(tmp_path / "static")
    assert inside(local(location=root), local(location=root + "/")) == ""
    assert inside(local(location=root), local(location=root + "/p")) == "p/"
    assert inside(local(location=root), local(location=root + "-private")) is None
    assert inside(local(location=root), local(location=str(tmp_path))) is None
    # Above it, with a RECORD_NAME that leads into it.
    above = backend_for(local(location=str(tmp_path)))
    assert backend_for(local(location=root)).inside(above, "static/r.json") == ""
    assert backend_for(local(location=root)).inside(above, "static/p/r.json") == "p/"
    assert backend_for(local(location=root)).inside(above, "other/r.json") is None

    def s3(**options: Any) -> Any:
        return S3Storage(access_key="a", secret_key="b", bucket_name="b", **options)

    assert inside(s3(), s3(location="p")) == "p/"
    top = backend_for(s3())
    assert backend_for(s3(location="static")).inside(top, "static/p/r.json") == "p/"
    assert inside(s3(location="static"), s3(location="static-p")) is None
    assert inside(s3(endpoint_url="http://127.0.0.1:1"), s3(location="p")) is None
    assert (
        inside(s3(), S3Storage(access_key="a", secret_key="b", bucket_name="c")) is None
    )

    def azure(port: int, **options: Any) -> Any:
        connection = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey=Zm9v;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        return AzureStorage(
            connection_string=connection, azure_container="c", **options
        )

    assert inside(azure(10000), azure(10000, location="p")) == "p/"
    assert inside(azure(10000), azure(20000, location="p")) is None

    def account(**options: Any) -> Any:
        key = {"account_name": "acct", "account_key": "Zm9v"}
        return AzureStorage(**key, azure_container="c", **options)

    connection = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9v;"
        "EndpointSuffix=core.windows.net"
    )
    given = AzureStorage(
        connection_string=connection, azure_container="c", location="p"
    )
    # (A CDN's domain changes the URLs only; a connection string, not where.)
    assert (
        inside(account(custom_domain="cdn.example.com"), account(location="p")) == "p/"
    )
    assert inside(account(), given) == "p/"
    assert inside(account(), account(endpoint_suffix="core.chinacloudapi.cn")) is None
