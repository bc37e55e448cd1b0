"""The backend contract: every shared scenario, once per destination.

Each test runs on local disk, S3 (moto), Azure Blob (Azurite) and Google
Cloud Storage (the emulator), through the real protocol. Requests are the
exact counts the servers saw, from the table in ``tests/destinations.py``;
what a run wrote is read at the server (on local disk: the files whose inode,
size or mtime changed). What only one backend does is tested in its own file
(``test_s3.py``, ``test_azure.py``, ``test_gcs.py``, ``test_incremental.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django
import pytest
from django.core.management import CommandError
from django.utils.module_loading import import_string

from collectstatic_plus import run as run_module

from .conftest import (
    MANIFEST_TREE,
    RECORD,
    default_sigint,
    many,
    md5,
    read_tree,
    record_files,
    run_collectstatic,
    run_stock,
    wait_until,
    write_tree,
)
from .destinations import (
    MANIFEST_BACKENDS,
    REQUESTS,
    AzureDestination,
    Destination,
    GCSDestination,
    LocalDestination,
    S3Destination,
)

KINDS = [
    "local",
    pytest.param("s3", marks=pytest.mark.s3),
    pytest.param("azure", marks=pytest.mark.azure),
    pytest.param("gcs", marks=pytest.mark.gcs),
]
SERVERS = {"s3": "s3_server", "azure": "azurite", "gcs": "gcs_server"}
CLASSES: dict[str, Any] = {
    "s3": S3Destination,
    "azure": AzureDestination,
    "gcs": GCSDestination,
}
#: Django 6.0 counts deletions in the summary line.
COUNTS_DELETED = django.VERSION >= (6, 0)

MakeDestination = Callable[..., Destination]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> MakeDestination:
    """Makes fresh destinations of one kind (the test's parameter)."""
    kind: str = request.param
    server = None if kind == "local" else request.getfixturevalue(SERVERS[kind])
    made = iter(range(100))

    def make(location: str = "") -> Destination:
        if kind == "local":
            return LocalDestination(tmp_path / f"bucket-{next(made)}", location)
        return CLASSES[kind](server, location)  # type: ignore[no-any-return]

    return make


@pytest.fixture
def destination(make: MakeDestination) -> Destination:
    return make()


@dataclass
class Result:
    """What one run printed, asked and wrote."""

    stdout: str
    stderr: str
    requests: Counter[str]
    written: list[str]


def collect(destination: Destination, **options: Any) -> Result:
    destination.start()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        run_collectstatic(stdout=stdout, stderr=stderr, **options)
    finally:
        destination.written_by_last = destination.written()  # type: ignore[attr-defined]
    return Result(
        stdout.getvalue(),
        stderr.getvalue(),
        destination.requests(),
        destination.written_by_last,  # type: ignore[attr-defined]
    )


def summary(destination: Destination, copied: int, unmodified: int = 0) -> str:
    """Stock's summary line (it names the destination only on local disk)."""
    noun = "file" if copied == 1 else "files"
    where = ""
    if isinstance(destination, LocalDestination):
        from django.conf import settings

        where = f" to '{settings.STATIC_ROOT}'"
    line = f"{copied} static {noun} copied{where}"
    if unmodified:
        line += f", {unmodified} unmodified"
    return line + "."


def keys(destination: Destination, names: list[str]) -> list[str]:
    return sorted(destination.key(name) for name in names)


def contents(destination: Destination) -> dict[str, bytes]:
    """What the destination holds, by the names the storage uses."""
    prefix = f"{destination.location}/" if destination.location else ""
    return {
        name[len(prefix) :]: data
        for name, data in destination.contents().items()
        if name.startswith(prefix)
    }


@pytest.fixture
def source(tmp_path: Path, settings: Any) -> Path:
    root = many(tmp_path / "src", 30)
    settings.STATICFILES_DIRS = [str(root)]
    return root


# --- writing ----------------------------------------------------------------


@pytest.mark.parametrize("parallel", [None, 8])
def test_a_cold_run_writes_each_file_once_and_then_the_record(
    destination: Destination, source: Path, settings: Any, parallel: Any
) -> None:
    destination.use(settings)
    run = collect(destination, parallel=parallel)

    files = read_tree(source)
    assert run.stdout == f"\n{summary(destination, 30)}\n"
    assert run.written == keys(destination, [*files, RECORD])
    assert run.requests == destination.expected(writes=31)
    assert contents(destination) == files
    rows = record_files(json.loads(destination.get(destination.record_key)))
    assert {path: (row["md5"], row["size"]) for path, row in rows.items()} == {
        name: (hashlib.md5(data).hexdigest(), len(data)) for name, data in files.items()
    }


def test_a_no_change_rerun_reads_the_record_and_a_listing_and_writes_nothing(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    run = collect(destination, parallel=8)

    assert run.stdout == f"\n{summary(destination, 0, 30)}\n"
    assert run.written == []
    assert run.requests == destination.expected()


@pytest.mark.parametrize("parallel", [None, 8])
def test_changing_k_files_writes_exactly_those_and_the_record(
    destination: Destination, source: Path, settings: Any, parallel: Any
) -> None:
    destination.use(settings)
    collect(destination)
    changed = ["d0/f5.css", "d1/f11.css", "d4/f29.css"]
    for name in changed:
        (source / name).write_text("/* changed */\n")
    run = collect(destination, parallel=parallel)

    assert run.stdout == f"\n{summary(destination, 3, 27)}\n"
    assert run.written == keys(destination, [*changed, RECORD])
    assert run.requests == destination.expected(writes=4)
    assert contents(destination) == read_tree(source)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_changed_file_is_said_deleted_then_copied_as_stock_says_it(
    destination: Destination, source: Path, settings: Any, dry_run: bool
) -> None:
    destination.use(settings)
    collect(destination)
    (source / "d1/f1.css").write_text("/* changed */\n")
    run = collect(destination, dry_run=dry_run, verbosity=2)

    deleting, copying = ("Deleting", "Copying")
    if dry_run:
        deleting, copying = ("Pretending to delete", "Pretending to copy")
    lines = run.stdout.splitlines()
    said = [line for line in lines if line.startswith((deleting, copying))]
    assert said == [f"{deleting} 'd1/f1.css'", f"{copying} '{source / 'd1/f1.css'}'"]
    # Where a write replaces the object (S3, Azure, GCS), no delete is sent.
    assert run.requests == destination.expected(
        writes=0 if dry_run else 2, dry_run=dry_run
    )


def test_a_fresh_checkout_with_new_mtimes_writes_no_file(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    future = time.time() + 3600
    for path in source.rglob("*.css"):
        os.utime(path, (future, future))
    run = collect(destination, parallel=4)

    assert run.stdout == f"\n{summary(destination, 0, 30)}\n"
    # New stat tokens alone are worth a local record (the next run then
    # reads no source again), not an upload.
    local = isinstance(destination, LocalDestination)
    assert run.written == (keys(destination, [RECORD]) if local else [])
    assert run.requests == destination.expected()


def test_without_a_record_the_listing_decides_by_content(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    destination.delete(destination.record_key)
    (source / "d2/f7.css").write_text("/* new */\n")
    run = collect(destination)

    assert run.stdout == f"\n{summary(destination, 1, 29)}\n"
    assert run.written == keys(destination, ["d2/f7.css", RECORD])


def test_out_of_band_changes_are_noticed_by_the_listing(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    destination.delete(destination.key("d0/f0.css"))
    destination.put(destination.key("d1/f1.css"), b"tampered")
    run = collect(destination)

    # Remote listings show the same ETag or MD5 as recorded again, so the
    # record stands; on local disk the files' mtimes are new.
    again = ["d0/f0.css", "d1/f1.css"]
    local = isinstance(destination, LocalDestination)
    assert run.written == keys(destination, again + ([RECORD] if local else []))
    assert contents(destination) == read_tree(source)


def test_force_writes_every_file(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    run = collect(destination, force=True, parallel=4)

    assert run.stdout == f"\n{summary(destination, 30)}\n"
    local = isinstance(destination, LocalDestination)
    assert run.written == keys(
        destination, [*read_tree(source)] + ([RECORD] if local else [])
    )


def test_force_writes_every_post_processed_file_and_the_manifest_again(
    destination: Destination, tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    destination.use_manifest(settings)
    collect(destination)
    run = collect(destination, force=True, parallel=4)

    # (So that changed storage options, a new ACL say, reach them all.)
    hashed = json.loads(destination.get(destination.key("staticfiles.json")))["paths"]
    local = isinstance(destination, LocalDestination)
    assert run.written == keys(
        destination,
        [*MANIFEST_TREE, *hashed.values(), "staticfiles.json"]
        + ([RECORD] if local else []),
    )


@pytest.mark.parametrize("parallel", [None, 8])
def test_parallel_leaves_what_serial_leaves(
    make: MakeDestination, source: Path, settings: Any, parallel: Any
) -> None:
    serial, threaded = make("static"), make("static")
    serial.use(settings)
    one = collect(serial)
    threaded.use(settings)
    other = collect(threaded, parallel=parallel)

    assert contents(threaded) == contents(serial) == read_tree(source)
    assert other.requests == one.requests
    record = record_files(json.loads(threaded.get(threaded.record_key)))
    assert {p: (r["md5"], r["size"]) for p, r in record.items()} == {
        p: (r["md5"], r["size"])
        for p, r in record_files(json.loads(serial.get(serial.record_key))).items()
    }


# --- deleting ---------------------------------------------------------------


def test_delete_removes_exactly_what_it_wrote_and_no_longer_collects(
    make: MakeDestination, source: Path, settings: Any
) -> None:
    destination = make("static")
    destination.use(settings)
    collect(destination)
    destination.put("elsewhere/keep.css", b"outside the location")
    destination.put("static-other/keep.css", b"outside, same prefix")
    destination.put("static/put-by-hand.css", b"not ours")
    (source / "d0/f0.css").unlink()
    run = collect(destination, delete=True, verbosity=2)

    assert "Deleting stale 'd0/f0.css'" in run.stdout
    assert "put-by-hand.css" not in run.stdout
    assert run.stderr == (
        "1 file(s) not written by collectstatic-plus kept (first: "
        "put-by-hand.css); --delete-unowned deletes them too.\n"
    )
    deleted = "1 static file deleted, " if COUNTS_DELETED else ""
    assert run.stdout.endswith(f"\n{deleted}{summary(destination, 0, 29)}\n")
    assert run.requests == destination.expected(batches=1)
    assert sorted(destination.names()) == sorted(
        [
            "elsewhere/keep.css",
            "static-other/keep.css",
            "static/put-by-hand.css",
            destination.record_key,
            *keys(destination, list(read_tree(source))),
        ]
    )
    # Asked for explicitly, files it did not write go too (in the location).
    run = collect(destination, delete_unowned=True, verbosity=2)
    assert "Deleting stale 'put-by-hand.css'" in run.stdout
    assert "static/put-by-hand.css" not in destination.names()
    assert "elsewhere/keep.css" in destination.names()


def test_delete_in_a_shared_bucket_leaves_every_foreign_file(
    destination: Destination, source: Path, settings: Any
) -> None:
    foreign = {
        "media/uploads/photo.jpg": b"a user's photo",
        "backups/db.sql": b"a backup",
        "d0/not-ours.css": b"beside ours",
    }
    for name, data in foreign.items():
        destination.put(name, data)
    destination.use(settings)  # location "": the whole bucket
    first = collect(destination, delete=True)
    # No record yet: nothing here is known to be ours.
    assert all(destination.get(name) == data for name, data in foreign.items())
    assert first.stdout.endswith(f"\n{summary(destination, 30)}\n")
    (source / "d1/f1.css").unlink()
    collect(destination, delete=True)
    assert all(destination.get(name) == data for name, data in foreign.items())
    assert "d1/f1.css" not in destination.names()


def test_delete_keeps_a_stale_file_someone_else_wrote_over(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    (source / "d0/f0.css").unlink()
    collect(destination)  # d0/f0.css is stale, and still ours
    destination.put(destination.key("d0/f0.css"), b"/* someone else's now */")
    run = collect(destination, delete=True)

    assert destination.get(destination.key("d0/f0.css")) == b"/* someone else's now */"
    assert run.stderr == (
        "1 file(s) not written by collectstatic-plus kept (first: "
        "d0/f0.css); --delete-unowned deletes them too.\n"
    )
    collect(destination, delete_unowned=True)
    assert destination.key("d0/f0.css") not in destination.names()


@pytest.mark.parametrize("flag", ["verify", "force"])
def test_verify_and_force_restore_an_overwritten_hashed_file(
    destination: Destination, tmp_path: Path, settings: Any, flag: str
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    destination.use_manifest(settings)
    collect(destination)
    hashed = json.loads(destination.get(destination.key("staticfiles.json")))
    name = destination.key(hashed["paths"]["css/a.css"])
    good = destination.get(name)
    destination.put(name, b"/* overwritten by hand */")
    # Post-processing checks that its outputs are there, not their bytes...
    assert collect(destination).stdout.startswith("Post-processing up to date.\n")
    assert destination.get(name) == b"/* overwritten by hand */"
    # ... unless told not to trust the destination.
    report = tmp_path / "report.json"
    collect(destination, report=str(report), **{flag: True})
    assert destination.get(name) == good
    done = json.loads(report.read_text())["post_processing"]
    assert (done["mode"], done["reason"]) == ("full", f"--{flag} checks every output")


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_name_that_is_not_utf8_fails_a_dry_run_where_the_upload_would(
    destination: Destination, source: Path, settings: Any, dry_run: bool
) -> None:
    destination.use(settings)
    with open(os.fsencode(source / "d0") + b"/caf\xe9.css", "wb") as handle:
        handle.write(b"latin-1")
    name = "d0/caf\udce9.css"  # as the finders list it
    if isinstance(destination, LocalDestination):  # any name the disk takes
        run = collect(destination, dry_run=dry_run)
        assert run.stdout.endswith(f"\n{summary(destination, 31)}\n")
        return
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr, dry_run=dry_run)
    assert str(raised.value) == f"1 static file could not be collected: {name}."
    assert stderr.getvalue() == (
        f"Could not collect '{name}': UnicodeEncodeError: 'utf-8' codec can't "
        "encode character '\\udce9' in position 6: surrogates not allowed\n"
    )


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_location_the_storage_refuses_is_one_line_before_any_request(
    make: MakeDestination, source: Path, settings: Any, dry_run: bool
) -> None:
    destination = make("a/../../b")
    destination.use(settings)
    if isinstance(destination, LocalDestination):  # a folder: any path is one
        run = collect(destination, dry_run=dry_run)
        assert "\n30 static files copied to '" in run.stdout
        return
    destination.start()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(dry_run=dry_run)
    backend = destination.class_path
    assert str(raised.value) == (
        f"The static files storage ({backend}) could not be set up: "
        "SuspiciousOperation: the storage refuses its location 'a/../../b'"
    )
    assert destination.requests() == Counter()


def test_a_name_with_a_backslash_is_found_unchanged_where_the_storage_maps_it(
    destination: Destination, source: Path, settings: Any
) -> None:
    """django-storages stores 'd0/a\\b.css' as 'd0/a/b.css' (stock then finds
    it there); FileSystemStorage saves it under a new name every run, for
    stock too. The sync record never holds such a name (its reader refuses
    it): the listing decides."""
    (source / "d0" / "a\\b.css").write_text("b")
    destination.use(settings)
    collect(destination)
    for _ in range(2):
        run = collect(destination)
        assert run.stderr == ""
        local = isinstance(destination, LocalDestination)
        assert run.stdout == f"\n{summary(destination, int(local), 30 + (not local))}\n"
    record = json.loads(destination.get(destination.record_key))
    assert "d0/a\\b.css" not in record_files(record)
    assert len(record_files(record)) == 30


#: Sources that some storages store under one name: django-storages turns
#: a backslash into a slash (S3, GCS, Azure); AzureStorage drops a dot at
#: the end (on local disk, each is a file of its own).
ONE_NAME = {
    "a\\b.css": "backslash",
    "a/b.css": "slash",
    "s/trail.": "with a dot",
    "s/trail": "without",
    "k.css": "k",
}
#: Per backend: the sources stored under another's name (later in finder
#: order than it), so not written.
SHADOWED = {"local": 0, "s3": 1, "gcs": 1, "azure": 2}


@pytest.mark.parametrize("slash_first", [False, True])
def test_sources_stored_under_one_name_leave_the_first_as_stock_and_settle(
    make: MakeDestination, tmp_path: Path, settings: Any, slash_first: bool
) -> None:
    """Stock saves the first source (in finder order) and the later one
    finds that file there, newer: 'unmodified', every run. The sync record
    names only what landed; --delete deletes neither."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils.functional import empty

    tree = {**ONE_NAME}
    later = write_tree(tmp_path / "later", {"a/b.css": tree.pop("a/b.css")})
    roots = [str(write_tree(tmp_path / "src", tree)), str(later)]
    settings.STATICFILES_DIRS = roots[::-1] if slash_first else roots
    theirs, ours = make(), make()
    kind, files = theirs.kind, len(ONE_NAME)
    if kind == "local":  # (it saves 'a\\b.css' under a new name every run)
        (tmp_path / "src" / "a\\b.css").unlink()
        files -= 1
    theirs.use(settings)
    root = str(settings.STATIC_ROOT)
    stock = [run_stock(dry_run=True).stdout, run_stock().stdout, run_stock().stdout]
    staticfiles_storage._wrapped = empty
    ours.use(settings)
    stock = [line.replace(root, str(settings.STATIC_ROOT)) for line in stock]
    cold_dry = collect(ours, dry_run=True)
    first, again = collect(ours), collect(ours)
    dry = collect(ours, dry_run=True, verbosity=2)
    pruned = collect(ours, delete=True)

    shadowed = SHADOWED[kind]
    assert first.stdout == f"\n{summary(ours, files - shadowed, shadowed)}\n"
    assert [first.stdout, again.stdout] == stock[1:]
    assert contents(ours) == contents(theirs)
    if kind != "local":
        first_one = b"slash" if slash_first else b"backslash"
        assert contents(ours)["a/b.css"] == first_one  # the first: stock's
    settled = f"\n{summary(ours, 0, files)}\n"
    assert again.stdout == pruned.stdout == settled
    assert again.written == dry.written == pruned.written == []
    assert contents(ours) == contents(theirs)
    # A dry run says what stock's says: on a cold destination each file
    # would be copied (none is there yet); later, stock's line for each.
    said = [line for line in cold_dry.stdout.splitlines() if line[:7] == "Pretend"]
    assert said == [line for line in stock[0].splitlines() if line[:7] == "Pretend"]
    assert len(said) == files
    assert cold_dry.stdout.endswith(f"\n{summary(ours, files)}\n")
    assert dry.stdout.count("(not modified)") == files
    assert dry.stdout.endswith(settled)
    # The record claims no content for a file it did not write.
    rows = record_files(json.loads(ours.get(ours.record_key)))
    landed, stored = contents(ours), {"s/trail.": "s/trail"} if kind == "azure" else {}
    assert rows and all(
        md5(landed[stored.get(name, name)]) == row["md5"] for name, row in rows.items()
    )
    # After --clear, as on the first run.
    cleared = collect(ours, clear=True)
    assert cleared.stdout.endswith(f"{summary(ours, files - shadowed, shadowed)}\n")
    assert contents(ours) == contents(theirs)


def test_max_delete_stops_the_run_before_anything_is_written(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    (source / "d0/f0.css").unlink()
    (source / "d1/f1.css").unlink()
    (source / "d2/f2.css").write_text("/* changed */\n")
    before = destination.contents(record=True)
    with pytest.raises(CommandError) as raised:
        collect(destination, delete=True, max_delete=1)

    assert str(raised.value) == (
        "--delete would remove 2 stale files, more than --max-delete 1; "
        "nothing was written or deleted: d0/f0.css, d1/f1.css."
    )
    assert destination.written_by_last == []  # type: ignore[attr-defined]
    assert destination.contents(record=True) == before
    # A dry run lists them all, and does not fail for it: it says why a real
    # run would.
    report = source.parent / "dry.json"
    dry = collect(
        destination, delete=True, max_delete=1, dry_run=True, report=str(report)
    )
    assert "Would delete d0/f0.css\n" in dry.stdout
    assert "Would delete d1/f1.css\n" in dry.stdout
    assert dry.stderr == (
        "--delete would remove 2 stale files, more than --max-delete 1: a real "
        "run stops there, writing nothing.\n"
    )
    assert json.loads(report.read_text())["deletions"] == {
        "stale": ["d0/f0.css", "d1/f1.css"],
        "unowned": [],
        "reason": "a real run stops: more than --max-delete 1",
    }


def test_no_deletion_after_a_failed_write_and_the_record_lists_what_landed(
    destination: Destination,
    source: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination.use(settings)
    collect(destination)
    (source / "d0/f0.css").unlink()
    (source / "d1/f1.css").write_text("/* changed */")
    (source / "d2/f2.css").write_text("/* changed */")
    storage_class = import_string(destination.class_path)
    real_save = storage_class._save

    def failing_save(self: Any, name: str, content: Any) -> Any:
        if name.endswith("d1/f1.css"):
            raise OSError(f"simulated failure writing {name}")
        return real_save(self, name, content)

    monkeypatch.setattr(storage_class, "_save", failing_save)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr, delete=True, parallel=4)
    assert str(raised.value) == "1 static file could not be collected: d1/f1.css."
    assert "Could not collect 'd1/f1.css': OSError: simulated failure" in (
        stderr.getvalue()
    )
    assert destination.key("d0/f0.css") in destination.names()

    monkeypatch.setattr(storage_class, "_save", real_save)
    run = collect(destination)
    assert run.written == keys(destination, ["d1/f1.css", RECORD])


def test_clear_empties_the_destination_first_in_one_batch_where_it_can(
    destination: Destination, source: Path, settings: Any
) -> None:
    destination.use(settings)
    collect(destination)
    destination.put(destination.key("old/stale.css"), b"old")
    run = collect(destination, clear=True, verbosity=2)

    assert "Deleting 'old/stale.css'" in run.stdout
    assert contents(destination) == read_tree(source)
    # Stock asks the storage about every name; ours lists and batch-deletes.
    table = REQUESTS.get(destination.kind)
    if table is not None:
        assert {kind: run.requests[kind] for kind in table.batch} == table.batch


@pytest.mark.parametrize("dry_run", [False, True])
def test_clear_neither_prints_nor_counts_the_sync_record(
    destination: Destination,
    source: Path,
    settings: Any,
    dry_run: bool,
    tmp_path: Path,
) -> None:
    destination.use(settings)
    collect(destination)
    report = tmp_path / "report.json"
    run = collect(
        destination, clear=True, dry_run=dry_run, verbosity=2, report=str(report)
    )

    verb = "Pretending to delete" if dry_run else "Deleting"
    assert run.stdout.count(f"{verb} '") == 30
    assert RECORD not in run.stdout
    if COUNTS_DELETED:
        assert "\n30 static files deleted, " in run.stdout
    # The report (and a dry run's table) counts the files --clear deletes.
    deleted = [
        e["path"]
        for e in json.loads(report.read_text())["files"]
        if e["action"] == "deleted"
    ]
    assert sorted(deleted) == sorted(read_tree(source))
    if dry_run:
        assert "and delete 30 files" in run.stdout
    # A real run writes a new record; a dry run leaves the old one.
    assert destination.record_key in destination.names()


# --- the sync record ----------------------------------------------------------


def test_the_sync_record_names_no_versions(
    destination: Destination, source: Path, settings: Any
) -> None:
    """It may be public (WhiteNoise serves STATIC_ROOT): a hash of what must
    match, not the versions of Django or of this package."""
    import collectstatic_plus

    destination.use(settings)
    collect(destination)
    text = destination.get(destination.record_key).decode()
    assert django.get_version() not in text
    assert collectstatic_plus.__version__ not in text
    state = json.loads(text)["state"]
    assert list(state) == ["versions"] and len(state["versions"]) == 16


def test_a_record_another_run_wrote_since_this_one_read_it_is_not_replaced(
    destination: Destination,
    source: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written behind the lease's back (by hand, or a run that takes none):
    the record is replaced only on the condition that it is as this run read
    it, so it never describes files another run wrote."""
    from collectstatic_plus.recorder import Recorder

    destination.use(settings)
    collect(destination)
    (source / "d0/f5.css").write_text("/* changed */\n")
    theirs = b'{"written": "by another run"}'
    load = Recorder.load

    def load_then_overwrite(self: Recorder, *args: Any) -> Any:
        found = load(self, *args)
        destination.put(destination.record_key, theirs)
        return found

    monkeypatch.setattr(Recorder, "load", load_then_overwrite)
    with pytest.raises(CommandError) as raised:
        run_collectstatic()
    assert str(raised.value) == (
        "The sync record was written by another run since this run read it; "
        "this run's record was not written. Run collectstatic again."
    )
    assert destination.get(destination.record_key) == theirs
    assert destination.lease_key not in destination.names()


def test_a_record_kept_in_another_storage_leaves_none_in_the_destination(
    destination: Destination, source: Path, settings: Any, tmp_path: Path
) -> None:
    destination.use(settings)
    settings.STORAGES = {
        **settings.STORAGES,
        "records": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "records")},
        },
    }
    settings.COLLECTSTATIC_PLUS = {"RECORD_STORAGE": "records"}
    collect(destination)
    assert destination.record_key not in destination.names()
    record = json.loads((tmp_path / "records" / RECORD).read_bytes())
    assert sorted(record_files(record)) == sorted(read_tree(source))

    again = collect(destination, verbosity=2)
    assert again.written == []
    assert again.stdout.endswith(f"\n{summary(destination, 0, 30)}\n")
    table = REQUESTS.get(destination.kind)
    if table is not None:  # the lease is kept with the record
        assert again.requests == Counter(table.listing)


def test_a_record_storage_inside_the_destination_is_refused(
    destination: Destination, source: Path, settings: Any
) -> None:
    storage = destination.use(settings)
    where = (
        settings.STATIC_ROOT if destination.kind == "local" else destination.location
    )
    inside = {
        **storage["OPTIONS"],
        "location": f"{where}/private" if where else "private",
    }
    settings.STORAGES = {**settings.STORAGES, "records": {**storage, "OPTIONS": inside}}
    settings.COLLECTSTATIC_PLUS = {"RECORD_STORAGE": "records"}

    with pytest.raises(CommandError) as raised:
        collect(destination)

    assert str(raised.value) == (
        "The sync record's storage ('records', RECORD_STORAGE) is inside the "
        f"destination: the record would be 'private/{RECORD}' there, served, and "
        "deleted by --clear and --delete-unowned. Give it a place outside."
    )
    assert destination.names() == []


# --- dry runs and interruptions ---------------------------------------------


@pytest.mark.parametrize("delete", [False, True])
def test_a_dry_run_reads_as_a_real_run_and_writes_nothing(
    destination: Destination, source: Path, settings: Any, delete: bool
) -> None:
    destination.use(settings)
    write_tree(source, {"stale.css": "p { color: green }\n"})
    collect(destination)
    (source / "stale.css").unlink()  # collected before: ours, and stale now
    (source / "d0/f0.css").write_text("/* changed */\n")
    write_tree(source, {"new.css": "p { color: blue }\n"})
    before = destination.contents(record=True)
    run = collect(destination, dry_run=True, delete=delete, verbosity=2)

    assert f"Pretending to copy '{source / 'd0/f0.css'}'" in run.stdout
    assert f"Pretending to copy '{source / 'new.css'}'" in run.stdout
    assert ("Would delete stale.css\n" in run.stdout) is delete
    assert run.requests == destination.expected(dry_run=True)
    assert run.written == []
    assert destination.contents(record=True) == before


def test_a_dry_run_says_each_write_and_deletion_in_the_destinations_terms(
    destination: Destination, source: Path, settings: Any
) -> None:
    """Beside stock's 'Pretending to copy' lines: new or changed, the size;
    copy on local disk, upload elsewhere; then the deletions."""
    destination.use(settings)
    collect(destination)
    (source / "d0/f5.css").write_text("/* changed */\n")
    write_tree(source, {"d9/new.css": "n{}"})
    (source / "d1/f11.css").unlink()
    run = collect(destination, dry_run=True, delete=True, verbosity=1)
    verb = "copy" if isinstance(destination, LocalDestination) else "upload"
    said = [line for line in run.stdout.splitlines() if line.startswith("Would")]
    assert sorted(said[:2]) == [  # in the finder's order
        f"Would {verb} (changed) d0/f5.css (14 B)",
        f"Would {verb} (new) d9/new.css (3 B)",
    ]
    assert said[2:] == ["Would delete d1/f11.css"]
    assert run.stdout.splitlines()[-3] == (
        "Dry run: would copy 2 files (17 B) and delete 1 file; nothing was written."
    )
    assert run.written == []


def test_an_interrupted_run_records_only_what_landed_and_the_next_finishes(
    destination: Destination,
    source: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination.use(settings)
    collect(destination)
    for path in sorted(source.rglob("*.css")):
        path.write_text(f"/* changed {path.name} */\n")
    real_decide = run_module.decide
    decided: list[str] = []

    def ctrl_c_at_the_eleventh(path: str, *args: Any) -> Any:
        if len(decided) == 10:  # Ctrl-C as the main thread hands out file 11
            raise KeyboardInterrupt
        decided.append(path)
        return real_decide(path, *args)

    monkeypatch.setattr(run_module, "decide", ctrl_c_at_the_eleventh)
    with pytest.raises(CommandError) as raised:
        collect(destination)
    assert raised.value.returncode == 130
    assert str(raised.value) == (
        "Interrupted: 10 file(s) collected before the interrupt; run "
        "collectstatic again to finish."
    )
    assert sorted(destination.written_by_last) == keys(destination, [*decided, RECORD])

    monkeypatch.setattr(run_module, "decide", real_decide)
    run = collect(destination)
    rest = sorted(set(read_tree(source)) - set(decided))
    assert run.written == keys(destination, [*rest, RECORD])
    assert contents(destination) == read_tree(source)


# --- one run at a time -------------------------------------------------------


def test_the_lease_object_is_written_only_on_its_conditions(
    destination: Destination, settings: Any
) -> None:
    """Each backend's conditional create, replace and delete, at the server."""
    from django.core.files.storage import storages

    from collectstatic_plus.backends import backend_for

    storage = destination.use(settings)
    backend = backend_for(storages.create_storage(storage))
    one = backend.create("x.lease", b"one")
    assert one is not None
    assert backend.create("x.lease", b"two") is None
    assert backend.fetch("x.lease") == (b"one", one)
    assert backend.replace("x.lease", b"three", "1") is None  # not its version
    three = backend.replace("x.lease", b"three", one)
    assert three is not None and three != one
    assert backend.replace("x.lease", b"four", one) is None  # no longer
    assert backend.remove("x.lease", one) is False
    assert backend.fetch("x.lease") == (b"three", three)
    assert backend.remove("x.lease", three) is True
    assert backend.fetch("x.lease") is None
    assert destination.names() == []


def cli_settings(
    tmp_path: Path, destination: Destination, source: Path, **conf: Any
) -> str:
    """A settings module for a run in a process of its own: ``destination``,
    ``source`` listed by the slow finder, ``conf`` as COLLECTSTATIC_PLUS."""
    holder = SimpleNamespace(STORAGES={}, STATIC_ROOT=None)
    storage = destination.use(holder)
    options = dict(storage["OPTIONS"])
    prelude, extra = "", ""
    if options.pop("credentials", None) is not None:  # GCS: not a literal
        prelude = "from google.auth.credentials import AnonymousCredentials\n"
        extra = ', "credentials": AnonymousCredentials()'
    module = f"lease_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        f"{prelude}from tests.settings import *\n"
        f"STATIC_ROOT = {holder.STATIC_ROOT!r}\n"
        f"STATICFILES_DIRS = [{str(source)!r}]\n"
        'STATICFILES_FINDERS = ["tests.finders.SlowFinder"]\n'
        f"STORAGES = {{**STORAGES, 'staticfiles': {{'BACKEND': "
        f"{storage['BACKEND']!r}, 'OPTIONS': {{**{options!r}{extra}}}}}}}\n"
        f"COLLECTSTATIC_PLUS = {conf!r}\n"
    )
    return module


def start(
    tmp_path: Path,
    module: str,
    *args: str,
    slow: float = 0,
    hold: float = 0,
    **env: str,
) -> subprocess.Popen[str]:
    """The command in a process of its own: its finders list after ``slow``
    seconds (no lease yet), its first copy waits ``hold`` (the lease held)."""
    environment = {
        **os.environ,
        **env,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": module,
        "SLOW_FIND": str(slow),
        "SLOW_OPEN": str(hold),
        # google-api-core warns on Python 3.10 that it will be dropped.
        "PYTHONWARNINGS": "ignore::FutureWarning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


def wait_for_lease(destination: Destination, run: subprocess.Popen[str]) -> None:
    wait_until(lambda: destination.lease_key in destination.names(), run)


def agrees(destination: Destination, source: Path) -> None:
    """The destination holds ``source``, and its record says so, by MD5."""
    assert contents(destination) == read_tree(source)
    record = record_files(json.loads(destination.get(destination.record_key)))
    assert {path: row["md5"] for path, row in record.items()} == {
        path: hashlib.md5(data).hexdigest() for path, data in read_tree(source).items()
    }
    assert destination.lease_key not in destination.names()


HELD = r"the run on {host} \(pid {pid}\) since \d\d:\d\d:\d\d UTC"


def test_two_runs_at_once_take_turns_and_the_record_agrees_with_the_last(
    destination: Destination, tmp_path: Path
) -> None:
    """A second run waits for the first (a third that may not wait fails in
    one line naming it); the destination and its record end up the second's
    (with --delete: the first's other files go)."""
    first = many(tmp_path / "first", 12)
    second = write_tree(tmp_path / "second", {"d0/f0.css": "b{}", "new.css": "n{}"})
    a = start(tmp_path, cli_settings(tmp_path, destination, first), hold=3)
    wait_for_lease(destination, a)
    held = HELD.format(host=re.escape(socket.gethostname()), pid=a.pid)

    impatient = start(
        tmp_path, cli_settings(tmp_path, destination, second, LEASE_WAIT=0)
    )
    _, said = impatient.communicate(timeout=60)
    assert impatient.returncode == 1
    assert re.fullmatch(
        rf"CommandError: Another collectstatic is writing to this destination: "
        rf"{held}, its lease renewed until \d\d:\d\d:\d\d UTC\. Waited 0 s "
        r"\(LEASE_WAIT\); try again once it has finished\.\n",
        said,
    ), said

    b = start(tmp_path, cli_settings(tmp_path, destination, second), "--delete")
    _, said_a = a.communicate(timeout=60)
    _, said_b = b.communicate(timeout=60)
    assert (a.returncode, said_a) == (0, "")
    assert b.returncode == 0
    assert re.fullmatch(
        rf"Waiting for {held} to finish writing to this destination "
        r"\(up to 300 s\)\.\.\.\n",
        said_b,
    ), said_b
    agrees(destination, second)


def test_the_lease_of_a_killed_run_is_taken_over_at_once_on_its_machine(
    destination: Destination, tmp_path: Path
) -> None:
    """Its process is gone from this process table: no wait for LEASE_TTL
    (a holder on another machine is waited for until its lease runs out:
    test_lease.py)."""
    source = many(tmp_path / "src", 12)
    module = cli_settings(tmp_path, destination, source)
    killed = start(tmp_path, module, hold=60)
    wait_for_lease(destination, killed)
    killed.kill()
    killed.communicate()
    held = HELD.format(host=re.escape(socket.gethostname()), pid=killed.pid)

    started = time.monotonic()
    taker = start(tmp_path, module)
    _, said = taker.communicate(timeout=60)
    assert taker.returncode == 0, said
    assert re.fullmatch(
        rf"Took over the lease of {held}: that process has ended without "
        r"giving it back\.\n",
        said,
    ), said
    assert time.monotonic() - started < 15
    agrees(destination, source)


def test_ctrl_c_before_the_first_file_is_one_line_and_leaves_nothing(
    destination: Destination, tmp_path: Path
) -> None:
    """While the finders list (before the lease is taken): exit 130 with one
    line, and nothing written."""
    source = many(tmp_path / "src", 12)
    listing = tmp_path / "listing"
    module = cli_settings(tmp_path, destination, source)
    run = start(tmp_path, module, slow=60, SLOW_FIND_STARTED=str(listing))
    wait_until(listing.exists, run)
    run.send_signal(signal.SIGINT)
    _, said = run.communicate(timeout=60)
    assert (run.returncode, said) == (
        130,
        "CommandError: Interrupted; run collectstatic again to finish.\n",
    )
    assert destination.names() == []


# --- post-processing --------------------------------------------------------


def test_a_manifest_storage_leaves_what_stock_leaves_and_a_rerun_writes_nothing(
    make: MakeDestination, tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    theirs, ours = make(), make()
    theirs.use_manifest(settings)
    stock = run_stock()
    assert stock.stdout == f"\n{summary(theirs, 6)[:-1]}, 6 post-processed.\n"
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils.functional import empty

    staticfiles_storage._wrapped = empty
    ours.use_manifest(settings)
    first = collect(ours, parallel=8)
    again = collect(ours, parallel=8)

    assert first.stdout == f"\n{summary(ours, 6)[:-1]}, 6 post-processed.\n"
    assert contents(ours) == contents(theirs)
    assert len(contents(ours)) == 13  # six files, six hashed copies, the manifest
    assert again.stdout.startswith("Post-processing up to date.\n")
    assert again.written == []
    assert again.requests == ours.expected()


def test_what_a_failed_post_process_left_is_deleted_later_as_ours(
    destination: Destination,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    destination.use_manifest(settings)
    storage_class = import_string(MANIFEST_BACKENDS[destination.kind])
    real_save = storage_class._save

    def failing_save(self: Any, name: str, content: Any) -> Any:
        if re.search(r"i/y\.[0-9a-f]{12}\.png", name):  # (local: name.pid.tmp)
            raise OSError(f"simulated failure writing {name}")
        return real_save(self, name, content)

    monkeypatch.setattr(storage_class, "_save", failing_save)
    with pytest.raises(CommandError):
        collect(destination, parallel=4)
    record = json.loads(destination.get(destination.record_key))
    if isinstance(destination, LocalDestination):  # removed at once, not recorded
        assert record["retired"] == []
    monkeypatch.setattr(storage_class, "_save", real_save)
    (source / "i/x.png").write_bytes(b"z" * 100)  # a new name for it, a.css's too
    run = collect(destination, delete=True, keep_manifests=1)

    # Whatever the failed attempt left there (elsewhere than on local disk,
    # where it is removed at once) was this package's to delete.
    assert run.stderr == ""
    manifest = json.loads(destination.get(destination.key("staticfiles.json")))
    assert sorted(contents(destination)) == sorted(
        [*MANIFEST_TREE, *manifest["paths"].values(), "staticfiles.json"]
    )


def test_a_manifest_that_landed_though_its_write_failed_keeps_what_it_names(
    destination: Destination,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.COLLECTSTATIC_PLUS = {"RETRIES": 1}
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    destination.use_manifest(settings)
    collect(destination)
    storage_class = import_string(MANIFEST_BACKENDS[destination.kind])
    real_save = storage_class._save

    def landed_then_failed(self: Any, name: str, content: Any) -> Any:
        saved = real_save(self, name, content)
        if "staticfiles.json" in name:  # (a _save of its own: under its name)
            raise OSError("timed out reading the answer")  # as a lost response
        return saved

    (source / "i/x.png").write_bytes(b"z" * 100)
    monkeypatch.setattr(storage_class, "_save", landed_then_failed)
    with pytest.raises(CommandError):
        collect(destination)
    monkeypatch.setattr(storage_class, "_save", real_save)
    published = json.loads(contents(destination)["staticfiles.json"])["paths"]
    collect(destination, delete=True, post_process=False)

    # Whether the manifest landed is not known: nothing it may name is ours
    # to delete (the record's "retired" holds none of it).
    assert set(published.values()) <= set(contents(destination))


def test_a_changed_css_file_writes_only_what_depends_on_it(
    destination: Destination, tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    destination.use_manifest(settings)
    collect(destination, parallel=8)
    (source / "css/b.css").write_text("p { background: url('../i/x.png') }\n")
    run = collect(destination, parallel=8)

    manifest = json.loads(destination.get(destination.key("staticfiles.json")))
    hashed = manifest["paths"]
    # b.css changed, and a.css imports it: both get new hashed copies.
    assert run.written == keys(
        destination,
        [
            "css/b.css",
            hashed["css/b.css"],
            hashed["css/a.css"],
            "staticfiles.json",
            RECORD,
        ],
    )
    assert contents(destination)[hashed["css/b.css"]] == (
        b'p { background: url("../i/x.' + hashed["i/x.png"][4:].encode() + b'") }\n'
    )
