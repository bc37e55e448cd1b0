"""Incremental sync on local disk and on a storage we know nothing about."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django
import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError

from .conftest import (
    MANIFEST_TREE,
    RECORD,
    read_tree,
    record_files,
    run_collectstatic,
    run_stock,
    stock_view,
    wait_until,
    write_tree,
)

REPO = Path(__file__).resolve().parents[1]
GENERIC = "tests.storages.RemoteLikeStorage"


def tree(root: Path, count: int = 12) -> Path:
    return write_tree(
        root, {f"d{i % 3}/f{i}.js": f"var v{i} = {i};\n" for i in range(count)}
    )


@pytest.fixture
def source(tmp_path: Path, settings: Any, static_root: Path) -> Path:
    root = tree(tmp_path / "src")
    settings.STATICFILES_DIRS = [str(root)]
    return root


def use(settings: Any, backend: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}


def touch_all(root: Path, seconds_ahead: float = 3600) -> None:
    stamp = time.time() + seconds_ahead
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


def test_fresh_checkout_with_new_mtimes_copies_nothing(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    touch_all(source)
    result = run_collectstatic()
    assert (
        result.stdout == f"\n0 static files copied to '{static_root}', 12 unmodified.\n"
    )


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file any FileSystemStorage opens (sources and destination)."""
    paths: list[str] = []
    original = FileSystemStorage._open

    def recording_open(self: FileSystemStorage, name: str, mode: str = "rb") -> Any:
        paths.append(self.path(name))
        return original(self, name, mode)

    monkeypatch.setattr(FileSystemStorage, "_open", recording_open)
    return paths


def test_no_change_rerun_opens_no_file_but_the_record(
    source: Path, static_root: Path, opened: list[str]
) -> None:
    run_collectstatic()
    opened.clear()
    result = run_collectstatic()
    assert "12 unmodified" in result.stdout
    assert opened == [str(static_root / RECORD)]


def test_touched_sources_are_read_but_not_the_destination(
    source: Path, static_root: Path, opened: list[str]
) -> None:
    run_collectstatic()
    record_before = (static_root / RECORD).read_bytes()
    touch_all(source)
    opened.clear()
    result = run_collectstatic()
    assert "12 unmodified" in result.stdout
    assert sorted(opened) == sorted(
        [str(static_root / RECORD), *(str(p) for p in source.rglob("*.js"))]
    )
    # On local disk the record takes the new tokens, so the next run reads
    # no source again.
    assert (static_root / RECORD).read_bytes() != record_before
    opened.clear()
    assert "12 unmodified" in run_collectstatic().stdout
    assert opened == [str(static_root / RECORD)]


def test_string_tokens_of_older_releases_make_sources_read_once_without_a_warning(
    source: Path, static_root: Path, opened: list[str]
) -> None:
    run_collectstatic()
    document = json.loads((static_root / RECORD).read_bytes())
    for row in document["files"]:
        assert type(row[3]) is int and 0 <= row[3] < 2**64
        row[3] = "22a994-1-18eb1225fdd79d05-18eb1225fdd79d05"
    (static_root / RECORD).write_text(json.dumps(document))
    opened.clear()
    stderr = io.StringIO()
    result = run_collectstatic(stderr=stderr)
    assert stderr.getvalue() == ""
    assert result.stdout == (
        f"\n0 static files copied to '{static_root}', 12 unmodified.\n"
    )
    assert sorted(opened) == sorted(
        [str(static_root / RECORD), *(str(p) for p in source.rglob("*.js"))]
    )
    rows = json.loads((static_root / RECORD).read_bytes())["files"]
    assert all(type(row[3]) is int for row in rows)


def test_record_sees_each_written_file_as_the_disk_shows_it(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    rows = record_files(json.loads((static_root / RECORD).read_bytes()))
    assert sorted(rows) == sorted(read_tree(source))
    for path, row in rows.items():
        stat = (static_root / path).lstat()
        assert row["md5"] == hashlib.md5((source / path).read_bytes()).hexdigest()
        assert row["seen"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def test_changed_content_is_copied_even_when_older(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    target = source / "d1/f4.js"
    target.write_text("var changed = true;\n")
    os.utime(target, (1_000_000, 1_000_000))  # far older than the destination
    result = run_collectstatic(verbosity=2)
    assert f"Copying '{target}'" in result.stdout
    assert (static_root / "d1/f4.js").read_text() == "var changed = true;\n"
    assert result.stdout.endswith(
        f"\n1 static file copied to '{static_root}', 11 unmodified.\n"
    )


def test_a_source_edited_while_it_is_copied_is_recorded_as_what_landed(
    source: Path, static_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_collectstatic()
    edited = source / "d0/f0.js"
    edited.write_text("var v = 'x';\n")  # changed: read as this to decide
    save = FileSystemStorage._save

    def editing(self: FileSystemStorage, name: str, content: Any) -> str:
        if name == "d0/f0.js":  # edited again before the copy reads it
            edited.write_text("var v = 'yy';\n")
        return str(save(self, name, content))

    monkeypatch.setattr(FileSystemStorage, "_save", editing)
    run_collectstatic()
    monkeypatch.undo()
    assert (static_root / "d0/f0.js").read_text() == "var v = 'yy';\n"
    entry = record_files(json.loads((static_root / RECORD).read_bytes()))["d0/f0.js"]
    assert entry["md5"] == hashlib.md5(b"var v = 'yy';\n").hexdigest()
    edited.write_text("var v = 'x';\n")  # back to what the decision read

    run = run_collectstatic(verbosity=1)

    assert run.stdout.startswith("\n1 static file copied")
    assert (static_root / "d0/f0.js").read_text() == "var v = 'x';\n"


def test_a_rewrite_that_keeps_size_and_mtime_is_still_copied(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    target = source / "d0/f3.js"
    before = target.stat()
    target.write_text(target.read_text().replace("3", "7"))  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    )
    result = run_collectstatic()
    assert result.stdout.endswith(
        f"\n1 static file copied to '{static_root}', 11 unmodified.\n"
    )
    assert (static_root / "d0/f3.js").read_bytes() == target.read_bytes()


def test_without_record_local_content_is_compared(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    (static_root / RECORD).unlink()
    (static_root / "d0/f0.js").write_text("tampered\n")
    touch_all(source)
    result = run_collectstatic()
    assert result.stdout == (
        f"\n1 static file copied to '{static_root}', 11 unmodified.\n"
    )
    assert read_tree(static_root) == read_tree(source)


def test_out_of_band_edit_is_noticed_through_size_and_mtime(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    (static_root / "d2/f5.js").write_text("var v5 = 55;\n")
    result = run_collectstatic()
    assert "1 static file copied" in result.stdout
    assert read_tree(static_root) == read_tree(source)


def test_record_lists_each_file_with_its_content_hash(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    document = json.loads((static_root / RECORD).read_bytes())
    assert document["format"] == "collectstatic-plus-record"
    assert sorted(record_files(document)) == sorted(read_tree(source))
    entry = record_files(document)["d0/f0.js"]
    content = b"var v0 = 0;\n"
    assert entry["md5"] == hashlib.md5(content).hexdigest()
    assert entry["size"] == len(content)
    stat = (static_root / "d0/f0.js").stat()
    assert entry["seen"] == {"size": len(content), "mtime_ns": stat.st_mtime_ns}


def as_version_1(document: dict[str, Any]) -> dict[str, Any]:
    files = record_files(document)
    return {**document, "version": 1, "files": files}


BROKEN_RECORDS: dict[str, Callable[[dict[str, Any]], object]] = {
    "a list": lambda document: [],
    "unknown version": lambda document: {**document, "version": 9},
    "version 1, with objects as entries": as_version_1,
    "a row twice": lambda d: {**d, "files": d["files"] + d["files"][:1]},
    "other columns": lambda d: {**d, "columns": d["columns"][::-1]},
    "a short row": lambda d: {**d, "files": [row[:6] for row in d["files"]]},
    "a token of 64 bits and more": lambda d: {
        **d,
        "files": [[*row[:3], 2**64, *row[4:]] for row in d["files"]],
    },
    "a token below zero": lambda d: {
        **d,
        "files": [[*row[:3], -1, *row[4:]] for row in d["files"]],
    },
    "seen columns without a seen size": lambda d: {
        **d,
        "files": [[*row[:4], None, *row[5:]] for row in d["files"]],
    },
    "a processed row that refers outside": lambda d: {
        **d,
        "processed": [["a.css", "0" * 32, None, ["../etc/passwd"], [], False]],
    },
    "a processed row with a bad md5": lambda d: {
        **d,
        "processed": [["a.css", "x", None, [], [], False]],
    },
    "a processed row without a flag": lambda d: {
        **d,
        "processed": [["a.css", "0" * 32, None, [], []]],
    },
    "a retired file outside": lambda d: {**d, "retired": ["../etc/passwd"]},
    "retired files not a list": lambda d: {**d, "retired": "a.css"},
}


@pytest.mark.parametrize("broken", [*BROKEN_RECORDS, "not UTF-8"])
def test_broken_record_is_ignored_with_a_warning(
    source: Path, static_root: Path, broken: str
) -> None:
    run_collectstatic()
    if broken == "not UTF-8":
        content = b"\xff\xfe"
    else:
        document = json.loads((static_root / RECORD).read_bytes())
        content = json.dumps(BROKEN_RECORDS[broken](document)).encode()
    (static_root / RECORD).write_bytes(content)
    (static_root / "d0/f3.js").write_text("tampered\n")
    stderr = io.StringIO()
    result = run_collectstatic(stderr=stderr)
    assert stderr.getvalue().startswith(f"Ignoring the sync record '{RECORD}': ")
    assert "1 static file copied" in result.stdout
    assert json.loads((static_root / RECORD).read_bytes())["version"] == 3


def test_record_has_one_row_per_line_and_its_one_line_form_is_still_read(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    lines = (static_root / RECORD).read_bytes().split(b"\n")
    document = json.loads(b"\n".join(lines))
    assert lines[0].endswith(b',"files":[')
    rows = [
        json.dumps(row, separators=(",", ":")).encode() for row in document["files"]
    ]
    assert lines[1:-3] == [row + b"," for row in rows[:-1]] + rows[-1:]
    assert lines[-3] == b'],"processed":['  # nothing post-processed
    assert lines[-2].startswith(b'],"manifests":') and lines[-1] == b""
    (static_root / RECORD).write_text(json.dumps(document))  # one line
    (static_root / "d0/f3.js").write_text("tampered\n")
    stderr = io.StringIO()
    result = run_collectstatic(stderr=stderr)
    assert stderr.getvalue() == ""  # trusted: a distrusted record is warned of
    assert result.stdout.endswith(", 11 unmodified.\n")


def on_lines(change: Callable[[list[bytes]], None]) -> Callable[[bytes], bytes]:
    """Damage done to the record's lines: ``change`` edits the list in place."""

    def damage(data: bytes) -> bytes:
        lines = data.split(b"\n")
        change(lines)
        return b"\n".join(lines)

    return damage


BROKEN_LINES: dict[str, Callable[[bytes], bytes]] = {
    "cut short": on_lines(lambda lines: lines.__delitem__(slice(-2, None))),
    "data after the end": on_lines(lambda lines: lines.append(b"[]")),
    "a row that is not JSON": on_lines(
        lambda lines: lines.__setitem__(1, b'["d0/f0.js","0",')
    ),
    "a row with a bad md5": on_lines(
        lambda lines: lines.__setitem__(1, lines[1].replace(b'","', b'","x', 1))
    ),
    "a row twice": on_lines(lambda lines: lines.insert(1, lines[1])),
    "an empty line": on_lines(lambda lines: lines.insert(2, b"")),
}


BROKEN_REASONS = {
    "cut short": "cut short",
    "data after the end": "line 15: unexpected data after the files",
    "a row that is not JSON": "line 2: not valid JSON (Expecting ',' delimiter: "
    "line 1 column 16 (char 15))",
    "a row with a bad md5": "line 2: entry for 'd0/f0.js' has a bad md5",
    "a row twice": "line 3: 'd0/f0.js' is listed twice",
    "an empty line": "line 3: not valid JSON (Expecting value: line 1 column 1 "
    "(char 0))",
}


def test_a_record_that_cannot_be_read_is_ignored_with_a_one_line_warning(
    source: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collectstatic_plus.backends.local import LocalBackend

    run_collectstatic()
    settings.COLLECTSTATIC_PLUS = {"RETRIES": 1}

    def failing(self: Any, name: str) -> Any:  # as an SDK's error says it
        raise ValueError("The service refused the request\n<?xml?>\n<Error/>")

    monkeypatch.setattr(LocalBackend, "stream", failing)
    run = run_collectstatic(verbosity=1)

    assert run.stderr == (
        f"Ignoring the sync record '{RECORD}': cannot be read (ValueError: "
        "The service refused the request).\n"
    )


@pytest.mark.parametrize("broken", BROKEN_LINES)
def test_broken_record_line_is_ignored_with_a_warning(
    source: Path, static_root: Path, broken: str
) -> None:
    run_collectstatic()
    record = static_root / RECORD
    record.write_bytes(BROKEN_LINES[broken](record.read_bytes()))
    (static_root / "d0/f3.js").write_text("tampered\n")
    stderr = io.StringIO()
    result = run_collectstatic(stderr=stderr)
    assert stderr.getvalue() == (
        f"Ignoring the sync record '{RECORD}': {BROKEN_REASONS[broken]}.\n"
    )
    assert "1 static file copied" in result.stdout


def test_a_path_longer_than_s3_allows_is_recorded_and_read_back(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    deep = "/".join(["d" * 200] * 6) + "/x.css"  # 1,206 characters
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {deep: "x"}))]
    run_collectstatic()
    stderr = io.StringIO()
    again = run_collectstatic(stderr=stderr)
    assert stderr.getvalue() == ""  # the record is not ignored as unsafe
    assert again.stdout.endswith(
        f"0 static files copied to '{static_root}', 1 unmodified.\n"
    )


#: A name both the sync record (or its lease) and a run would write: that
#: name, the RECORD_NAME given (None: the default) and the sources added.
CLASHES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "a static file": ("d0/f0.js", "d0/f0.js", {}),
    "a hidden static file": (RECORD, None, {RECORD: "{}"}),
    "the lease": ("d1/f1.lease", "d1/f1", {"d1/f1.lease": "x"}),
    "the manifest": ("staticfiles.json", "staticfiles.json", {}),
    "inside a static file": ("d0/f0.js/r.json", "d0/f0.js/r.json", {}),
    "a folder of static files": ("d0", "d0", {}),
    # Post-processing's outputs (WhiteNoise's, Django's hashed copies).
    "a compressed copy": ("d0/f0.js.gz", "d0/f0.js.gz", {}),
    "a hashed copy": ("d0/f0.0c9bad953e8c.js", "d0/f0.0c9bad953e8c.js", {}),
    "a compressed hashed copy": (
        "d0/f0.0c9bad953e8c.js.br",
        "d0/f0.0c9bad953e8c.js.br",
        {},
    ),
}


@pytest.mark.parametrize("clash", CLASHES)
@pytest.mark.parametrize(
    "options", [{}, {"dry_run": True}, {"clear": True}], ids=["real", "dry", "clear"]
)
def test_a_record_named_like_a_file_the_run_writes_stops_it_before_any_write(
    source: Path,
    static_root: Path,
    settings: Any,
    clash: str,
    options: dict[str, Any],
) -> None:
    name, record_name, added = CLASHES[clash]
    write_tree(source, added)
    if clash == "the manifest":
        use(settings, "django.contrib.staticfiles.storage.ManifestStaticFilesStorage")
    if record_name is not None:  # collected before, under another record name
        settings.COLLECTSTATIC_PLUS = {"RECORD_NAME": "elsewhere.json"}
        run_collectstatic(use_default_ignore_patterns=False)
        settings.COLLECTSTATIC_PLUS = {"RECORD_NAME": record_name}
    before = read_tree(static_root, record=True) if static_root.exists() else {}
    with pytest.raises(CommandError) as raised:
        run_collectstatic(**options, use_default_ignore_patterns=False)
    assert str(raised.value) == (
        f"'{name}' is both the sync record's name (or its lease's) and a file "
        "this run writes: set COLLECTSTATIC_PLUS['RECORD_NAME'] to another name."
    )
    after = read_tree(static_root, record=True) if static_root.exists() else {}
    assert after == before  # neither the lease nor --clear touched it


def test_dry_run_writes_no_record(source: Path, static_root: Path) -> None:
    run_collectstatic(dry_run=True)
    assert not static_root.exists() or os.listdir(static_root) == []


def test_delete_removes_stale_files_but_not_the_record(
    source: Path, static_root: Path
) -> None:
    write_tree(source, {"old/gone.js": "x", "stale.css": "y"})
    run_collectstatic()
    for name in ("d0/f0.js", "old/gone.js", "stale.css"):
        (source / name).unlink()
    result = run_collectstatic(delete=True, verbosity=2)
    for name in ("d0/f0.js", "old/gone.js", "stale.css"):
        assert f"Deleting stale '{name}'" in result.stdout
    deleted = "3 static files deleted, " if django.VERSION >= (6, 0) else ""
    assert result.stdout.endswith(
        f"\n{deleted}0 static files copied to '{static_root}', 11 unmodified.\n"
    )
    assert read_tree(static_root) == read_tree(source)
    assert (static_root / RECORD).exists()


def test_delete_removes_a_stale_file_only_touched_since(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    (source / "d0/f0.js").unlink()
    run_collectstatic()
    later = time.time() + 60  # the same bytes, a new mtime (cp -r, a restore)
    os.utime(static_root / "d0/f0.js", (later, later))
    result = run_collectstatic(delete=True, verbosity=1)
    assert result.stderr == ""  # read and found as this package wrote it
    assert not (static_root / "d0/f0.js").exists()


def test_dry_run_delete_only_pretends(source: Path, static_root: Path) -> None:
    write_tree(source, {"stale.css": "y"})
    run_collectstatic()
    (source / "stale.css").unlink()
    result = run_collectstatic(delete=True, dry_run=True, verbosity=1)
    assert "Would delete stale.css\n" in result.stdout
    assert (static_root / "stale.css").exists()


@pytest.mark.parametrize("post_process", [False, True])
def test_delete_keeps_what_the_published_manifest_names(
    tmp_path: Path, settings: Any, static_root: Path, post_process: bool
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, "django.contrib.staticfiles.storage.ManifestStaticFilesStorage")
    run_collectstatic()
    old = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    (source / "css/b.css").write_text("p { color: blue }\n")
    run_collectstatic(post_process=post_process, delete=True, keep_manifests=1)
    # Without post-processing the manifest stays as it was, and all it names
    # stays; with it, the new one is published and b.css's old copy goes.
    published = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    assert (published == old) is not post_process
    assert all((static_root / name).exists() for name in published.values())
    gone = {name for name in old.values() if not (static_root / name).exists()}
    assert gone == ({old["css/b.css"]} if post_process else set())


def manifests_of_a_changing(
    tmp_path: Path, settings: Any, static_root: Path, runs: int
) -> list[str]:
    """``runs`` runs with a manifest storage, a.css changed before each (b.css
    never): a.css's hashed name in each manifest, oldest first."""
    source = write_tree(tmp_path / "src", {"a.css": "a{}", "b.css": "b{}"})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, "django.contrib.staticfiles.storage.ManifestStaticFilesStorage")
    copies = []
    for color in range(1, runs + 1):
        (source / "a.css").write_text(f"a{{color:#00{color}}}")
        run_collectstatic()
        paths = json.loads((static_root / "staticfiles.json").read_text())["paths"]
        copies.append(paths["a.css"])
    return copies


def test_keep_manifests_plans_what_it_deletes_when_post_processing_is_up_to_date(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    copies = manifests_of_a_changing(tmp_path, settings, static_root, 3)
    report = tmp_path / "report.json"
    run = run_collectstatic(
        delete=True, keep_manifests=2, dry_run=True, verbosity=1, report=str(report)
    )
    # Nothing changed: the published manifest counts once among the two kept.
    assert json.loads(report.read_text())["deletions"]["stale"] == [copies[0]]
    assert f"Would delete {copies[0]}\n" in run.stdout
    run_collectstatic(delete=True, keep_manifests=2, max_delete=1)
    assert sorted(path.name for path in static_root.glob("a.*.css")) == sorted(
        copies[1:]
    )


def test_a_reverted_file_keeps_its_hashed_copy_and_the_report_says_what_went(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    copies = manifests_of_a_changing(tmp_path, settings, static_root, 4)
    (Path(settings.STATICFILES_DIRS[0]) / "a.css").write_text("a{color:#002}")
    report = tmp_path / "report.json"
    run = run_collectstatic(delete=True, verbosity=1, report=str(report))
    # Planned before post-processing, the second copy looked stale; the run
    # writes it again (the content of the second run), so only the first goes.
    assert json.loads(report.read_text())["deletions"]["stale"] == [copies[0]]
    assert run.stdout.count("Deleting stale") == 1
    assert f"Deleting stale '{copies[0]}'" in run.stdout
    assert sorted(path.name for path in static_root.glob("a.*.css")) == sorted(
        copies[1:]
    )


def test_delete_removes_hashed_copies_of_manifests_dropped_by_runs_without_it(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    # Five manifests, from runs without --delete; the record keeps three.
    copies = manifests_of_a_changing(tmp_path, settings, static_root, 5)
    report = tmp_path / "report.json"
    run = run_collectstatic(delete=True, verbosity=1, report=str(report))
    # The first two fell out of the kept manifests without a --delete run to
    # remove them: still this package's files, not "not ours".
    assert json.loads(report.read_text())["deletions"] == {
        "stale": sorted(copies[:2]),
        "unowned": [],
    }
    assert run.stderr == ""
    assert sorted(path.name for path in static_root.glob("a.*.css")) == sorted(
        copies[2:]
    )
    record = json.loads((static_root / ".collectstatic-plus.json").read_text())
    assert record["retired"] == []


def test_delete_keeps_the_hashed_copy_a_kept_file_names_after_its_source_went(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    # img/bg.png is no longer collected but a.css still refers to it: its copy
    # stays (post-processing resolves it there, as stock's does), and a.css's
    # hashed copy names bg.png's hashed copy, which must stay with it.
    files = {"css/a.css": "a{background:url(../img/bg.png)}", "img/bg.png": "png"}
    source = write_tree(tmp_path / "src", {**files, "css/b.css": "b{}"})
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, "django.contrib.staticfiles.storage.ManifestStaticFilesStorage")
    run_collectstatic()
    (source / "img/bg.png").unlink()
    for color in ("", "red", "blue"):  # changes elsewhere, each with --delete
        (source / "css/b.css").write_text(f"b{{color:{color}}}")
        run_collectstatic(delete=True, keep_manifests=1)
    published = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    css = (static_root / published["css/a.css"]).read_text()
    assert css == 'a{background:url("../img/bg.bff139fa05ac.png")}'
    assert (static_root / "img/bg.bff139fa05ac.png").read_text() == "png"
    assert sorted(path.name for path in static_root.glob("img/*")) == [
        "bg.bff139fa05ac.png",
        "bg.png",
    ]


@pytest.mark.parametrize("keep_only_hashed", [False, True])
def test_delete_removes_the_compressed_files_of_the_hashed_copies_it_removes(
    tmp_path: Path, settings: Any, static_root: Path, keep_only_hashed: bool
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a{}", "b.css": "b{}" * 100})
    settings.STATICFILES_DIRS = [str(source)]
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    use(settings, "whitenoise.storage.CompressedManifestStaticFilesStorage")
    for color in range(1, 6):  # WhiteNoise compresses each new a.*.css
        (source / "a.css").write_text(f"a{{color:#00{color}}}" + " " * 300)
        assert run_collectstatic(delete=True, verbosity=1).stderr == ""

    names = {path.name for path in static_root.iterdir()}
    copies = {name for name in names if not name.startswith(("a.css", "b."))}
    copies.discard(RECORD)
    copies.discard("staticfiles.json")
    assert len(copies) == 3 * 3  # the last three manifests' a.css, .gz and .br
    assert {name.removesuffix(".gz").removesuffix(".br") for name in copies} <= names


@pytest.mark.parametrize(
    "storage",
    [
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
        "tests.storages.ShortHashStorage",  # not Django's way of naming them
    ],
)
def test_force_writes_every_hashed_copy_however_the_storage_names_it(
    tmp_path: Path, settings: Any, static_root: Path, storage: str
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", MANIFEST_TREE))]
    use(settings, storage)
    run_collectstatic()
    hashed = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    before = {name: (static_root / name).stat().st_ino for name in hashed.values()}
    run_collectstatic(force=True)
    after = {name: (static_root / name).stat().st_ino for name in hashed.values()}
    assert [name for name in hashed.values() if before[name] == after[name]] == []


@pytest.mark.parametrize("option", ["max_delete", "keep_manifests"])
def test_a_delete_option_without_delete_is_refused(source: Path, option: str) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(**{option: 2})
    flag = "--" + option.replace("_", "-")
    assert str(raised.value) == f"{flag} applies only with --delete."
    assert raised.value.returncode == 2  # a usage error, as argparse's
    run_collectstatic(**{option: 2}, delete_unowned=True)  # (implies --delete)


@pytest.mark.parametrize("option", ["delete", "delete_unowned"])
def test_delete_with_link_is_refused_naming_the_option_given(
    source: Path, option: str
) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(**{option: True}, link=True)
    flag = "--" + option.replace("_", "-")
    assert str(raised.value) == f"{flag} cannot be combined with --link."
    assert raised.value.returncode == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_delete": -1}, "--max-delete must be a whole number >= 0, not -1."),
        ({"max_delete": "3"}, "--max-delete must be a whole number >= 0, not '3'."),
        (  # --clear deletes everything, as stock's: no limit would hold
            {"max_delete": 1, "delete": True, "clear": True},
            "--max-delete cannot be combined with --clear.",
        ),
        ({"cache_dir": 123}, "--cache-dir must be a directory path, not 123."),
        ({"cache_dir": b"/c"}, "--cache-dir must be a directory path, not b'/c'."),
    ],
)
def test_bad_option_values_are_clear_errors(
    source: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(**options)
    assert str(raised.value) == message


def test_unknown_storage_first_run_is_exactly_stock(
    source: Path, static_root: Path, settings: Any
) -> None:
    use(settings, GENERIC)
    static_root.mkdir()
    theirs = run_stock(verbosity=2)
    their_tree = read_tree(static_root)
    for path in list(static_root.iterdir()):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    ours = run_collectstatic(verbosity=2)
    assert stock_view(ours.stdout) == theirs.stdout
    assert read_tree(static_root) == their_tree


def test_unknown_storage_second_run_is_decided_by_the_record(
    source: Path, static_root: Path, settings: Any
) -> None:
    use(settings, GENERIC)
    run_collectstatic()
    assert (static_root / RECORD).exists()
    touch_all(source)  # stock's rule would now copy everything
    result = run_collectstatic()
    assert result.stdout == "\n0 static files copied, 12 unmodified.\n"


@pytest.mark.parametrize("dry_run", [True, False])
def test_unknown_storage_takes_a_name_that_is_not_utf8(
    source: Path, settings: Any, dry_run: bool
) -> None:
    use(settings, GENERIC)  # (only S3, Azure and GCS refuse one)
    with open(os.fsencode(source / "d0") + b"/caf\xe9.js", "wb") as handle:
        handle.write(b"var latin1;")
    result = run_collectstatic(dry_run=dry_run)
    assert result.stdout.endswith("\n13 static files copied.\n")


def test_unknown_storage_verify_reads_and_compares(
    source: Path, static_root: Path, settings: Any
) -> None:
    use(settings, GENERIC)
    run_collectstatic()
    (static_root / "d1/f1.js").write_text("tampered\n")
    assert "12 unmodified" in run_collectstatic().stdout  # the record trusts it
    result = run_collectstatic(verify=True)
    assert result.stdout == "\n1 static file copied, 11 unmodified.\n"
    assert read_tree(static_root) == read_tree(source)


def test_unknown_storage_delete_uses_the_record(
    source: Path, static_root: Path, settings: Any
) -> None:
    use(settings, GENERIC)
    run_collectstatic()
    write_tree(static_root, {"unknown-to-us.css": "z"})
    (source / "d2/f2.js").unlink()
    run_collectstatic(delete=True)
    # It deletes what it wrote and no longer collects, nothing it never saw.
    assert not (static_root / "d2/f2.js").exists()
    assert (static_root / "unknown-to-us.css").exists()


def test_killed_run_then_normal_run_converges(tmp_path: Path) -> None:
    source = tree(tmp_path / "src", 120)
    roots = {"killed": tmp_path / "killed", "clean": tmp_path / "clean"}
    env_base = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}

    def command(name: str, slow: bool) -> tuple[list[str], dict[str, str]]:
        settings_name = f"kill_{name}_settings"
        (tmp_path / f"{settings_name}.py").write_text(
            textwrap.dedent(
                f"""
                from tests.settings import *
                STATIC_ROOT = {str(roots[name])!r}
                STATICFILES_DIRS = [{str(source)!r}]
                STORAGES = {{**STORAGES, "staticfiles": {{
                    "BACKEND": "tests.storages.SlowStorage"}}}}
                """
            )
        )
        env = {
            **env_base,
            "DJANGO_SETTINGS_MODULE": settings_name,
            "SLOW_STORAGE_DELAY": "0.05" if slow else "0",
        }
        argv = [sys.executable, "-m", "django", "collectstatic", "--noinput"]
        return [*argv, "--parallel", "4"], env

    argv, env = command("killed", slow=True)
    process = subprocess.Popen(argv, env=env)
    killed = roots["killed"]
    wait_until(lambda: killed.exists() and len(read_tree(killed)) >= 20, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # Half-written files are possible: make one explicitly.
    partial = next(p for p in roots["killed"].rglob("*.js"))
    partial.write_bytes(partial.read_bytes()[:3])

    argv, env = command("killed", slow=False)
    subprocess.run(argv, env=env, check=True, capture_output=True)
    argv, env = command("clean", slow=False)
    subprocess.run(argv, env=env, check=True, capture_output=True)

    assert read_tree(roots["killed"]) == read_tree(roots["clean"]) == read_tree(source)


def test_delete_keeps_a_file_with_other_bytes_whose_entry_saw_nothing(
    source: Path, static_root: Path
) -> None:
    run_collectstatic()
    document = json.loads((static_root / RECORD).read_bytes())
    for row in document["files"]:
        if row[0] == "d0/f0.js":  # as recorded when no listing saw the file
            row[4:] = [None, None, None]
    (static_root / RECORD).write_text(json.dumps(document))
    (static_root / "d0/f0.js").write_text("someone else's")
    (source / "d0/f0.js").unlink()

    stderr = io.StringIO()
    run_collectstatic(delete=True, stderr=stderr)
    assert (static_root / "d0/f0.js").read_text() == "someone else's"
    assert "1 file(s) not written by collectstatic-plus kept" in stderr.getvalue()


def test_a_record_named_like_a_folder_clashes_only_on_local_disk() -> None:
    from collectstatic_plus.options import RunOptions

    options = RunOptions(record_name="d0")
    disk, bucket = (SimpleNamespace(local=on, listed_name=str) for on in (True, False))
    with pytest.raises(CommandError):
        options.check_own_names(["d0/f0.js"], None, disk)  # type: ignore[arg-type]
    options.check_own_names(["d0/f0.js"], None, bucket)  # type: ignore[arg-type]
    with pytest.raises(CommandError):
        options.check_own_names(["x.js"], "d0", bucket)  # type: ignore[arg-type]


def test_a_dry_run_with_delete_names_the_old_hashed_copies_the_run_deletes(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "manifest-src", MANIFEST_TREE)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, "django.contrib.staticfiles.storage.ManifestStaticFilesStorage")
    run_collectstatic(delete=True, keep_manifests=1)
    old = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    (source / "css/b.css").write_text("p { color: blue }\n")

    planned = run_collectstatic(delete=True, keep_manifests=1, dry_run=True)
    assert f"Would delete {old['css/b.css']}\n" in planned.stdout
    done = run_collectstatic(delete=True, keep_manifests=1, verbosity=1)
    assert f"Deleting stale '{old['css/b.css']}'" in done.stdout
    assert not (static_root / old["css/b.css"]).exists()


def test_a_folder_linked_into_static_root_is_listed_through_the_link(
    source: Path, static_root: Path
) -> None:
    """Stock's storage calls go through the link: so does the listing (a
    changed file there was kept stale, a copy saved beside it every run)."""
    run_collectstatic()
    outside = static_root.parent / "outside"
    (static_root / "d0").rename(outside)
    (static_root / "d0").symlink_to(outside, target_is_directory=True)
    (outside / "loop").symlink_to(static_root, target_is_directory=True)
    (source / "d0/f0.js").write_text("var v0 = 'changed';\n")
    first = run_collectstatic(verbosity=1)
    second = run_collectstatic(verbosity=1)
    assert (
        first.stdout == f"\n1 static file copied to '{static_root}', 11 unmodified.\n"
    )
    assert (
        second.stdout == f"\n0 static files copied to '{static_root}', 12 unmodified.\n"
    )
    assert (outside / "f0.js").read_text() == "var v0 = 'changed';\n"
    assert sorted(p.name for p in outside.iterdir()) == [
        "f0.js",
        "f3.js",
        "f6.js",
        "f9.js",
        "loop",
    ]


def test_an_exists_the_project_set_on_the_storage_is_left_in_place(
    static_root: Path, sources: Path
) -> None:
    from django.contrib.staticfiles.storage import staticfiles_storage

    staticfiles_storage._setup()
    storage = staticfiles_storage._wrapped
    asked: list[str] = []

    def exists(name: str) -> bool:  # (a project's wrapper, or a test's mock)
        asked.append(name)
        return FileSystemStorage.exists(storage, name)

    storage.exists = exists
    try:
        run_collectstatic(verbosity=0)
        assert vars(storage)["exists"] is exists
        assert asked  # (it was asked during the run too)
    finally:
        del storage.exists


@pytest.mark.parametrize("dry_run", [True, False])
def test_unknown_storage_reports_a_file_stocks_rule_replaces_as_changed(
    source: Path, static_root: Path, settings: Any, tmp_path: Path, dry_run: bool
) -> None:
    """With no record, stock's rule decides (exists, then modification
    times): the file it replaces was there, as its exists() said; no request
    more is made to know it."""
    from .storages import CountingRemoteLikeStorage

    use(settings, "tests.storages.CountingRemoteLikeStorage")
    run_stock(verbosity=0)  # collected before, by stock: no record
    later = time.time() + 3600
    os.utime(source / "d0/f0.js", (later, later))
    (source / "d1/new.js").write_text("var n;\n")

    CountingRemoteLikeStorage.asked = {}
    report = tmp_path / "report.json"
    result = run_collectstatic(dry_run=dry_run, report=str(report), verbosity=2)
    files = {e["path"]: e for e in json.loads(report.read_text())["files"]}
    assert files["d0/f0.js"]["action"] == "changed"
    assert files["d1/new.js"]["action"] == "new"
    assert files["d1/f1.js"]["action"] == "unchanged"
    said = "Pretending to delete" if dry_run else "Deleting"
    assert result.stdout.count(f"{said} 'd0/f0.js'\n") == 1  # (by stock's rule)
    if dry_run:
        assert "Would upload (changed) d0/f0.js (12 B)\n" in result.stdout
        assert "Would upload (new) d1/new.js (7 B)\n" in result.stdout
    # Stock's rule asks once, the save once more (Storage.get_available_name).
    asked = CountingRemoteLikeStorage.asked
    assert asked["d0/f0.js"] == asked["d1/new.js"] == (1 if dry_run else 2)
