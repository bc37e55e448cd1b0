"""Dry runs that tell the truth, the JSON report, --check and live progress."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import django
import jsonschema
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

import collectstatic_plus

from .buckets import S3_MANIFEST, Bucket, kinds
from .conftest import read_tree, run_collectstatic, write_tree
from .servers.s3 import S3Server

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
SCHEMA = json.loads(
    (Path(collectstatic_plus.__file__).parent / "report.schema.json").read_text()
)
MANIFEST = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"

TREE: dict[str, bytes | str] = {
    "css/site.css": "body { background: url('../img/bg.png'); }\n",
    "css/print.css": "p { color: black; }\n",
    "img/bg.png": b"\x89PNG" + bytes(range(60)),
    "js/app.js": "console.log('app');\n",
}


@pytest.fixture
def scene(tmp_path: Path, settings: Any, static_root: Path) -> Path:
    """A destination one run behind: new, changed, unchanged, stale, conflict."""
    first = write_tree(tmp_path / "first", {**TREE, "stale.txt": "old"})
    second = write_tree(tmp_path / "second", {"js/app.js": "console.log('other');\n"})
    settings.STATICFILES_DIRS = [str(first), str(second)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    run_collectstatic()
    (first / "css/print.css").write_text("p { color: #111; }\n")  # changed
    write_tree(first, {"js/new.js": "var n = 1;\n"})  # new
    (first / "stale.txt").unlink()  # ours, and stale: deleted with --delete
    return tmp_path


def report_of(tmp_path: Path, **options: Any) -> dict[str, Any]:
    path = tmp_path / "report.json"
    run_collectstatic(report=str(path), **options)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def actions(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["path"], entry["action"]) for entry in document["files"]]


def test_dry_run_writes_nothing_and_plans_what_the_real_run_does(
    scene: Path, static_root: Path
) -> None:
    before = read_tree(static_root, record=True)
    dry = report_of(scene, dry_run=True, delete=True)
    assert read_tree(static_root, record=True) == before

    real = report_of(scene, delete=True)
    assert actions(dry) == actions(real)
    assert actions(real) == [
        ("css/print.css", "changed"),
        ("css/site.css", "unchanged"),
        ("img/bg.png", "unchanged"),
        ("js/app.js", "unchanged"),
        ("js/new.js", "new"),
        ("js/app.js", "conflict"),
        ("stale.txt", "deleted"),
    ]
    pp_dry, pp_real = dry["post_processing"], real["post_processing"]
    assert pp_dry["would_write"] == pp_real["written"]
    assert pp_dry["manifest_changes"] is pp_real["manifest_changes"] is True
    hashed = {e["path"]: e.get("hashed_name") for e in dry["files"]}
    assert hashed == {e["path"]: e.get("hashed_name") for e in real["files"]}


def test_a_run_nobody_reports_on_keeps_no_per_file_entries(tmp_path: Path) -> None:
    from collectstatic_plus.management.commands.collectstatic import Command

    source = write_tree(tmp_path / "src", {f"f{i}.css": "x" * i for i in range(1, 6)})
    commands = []
    for report in (None, str(tmp_path / "report.json")):
        command = Command()
        with override_settings(
            STATIC_ROOT=str(tmp_path / f"root-{len(commands)}"),
            STATICFILES_DIRS=[str(source)],
        ):
            call_command(command, interactive=False, verbosity=2, report=report)
        commands.append(command)

    quiet, reported = (c.report for c in commands)
    assert quiet.files == {} and len(reported.files) == 5
    assert quiet.phase_lines()[1] == reported.phase_lines()[1] == "Bytes copied: 15."


def test_report_validates_and_totals_add_up(scene: Path) -> None:
    document = report_of(scene, dry_run=True, delete=True)
    jsonschema.validate(document, SCHEMA)
    for action, total in document["totals"].items():
        entries = [e for e in document["files"] if e["action"] == action]
        assert total["files"] == len(entries)
        assert total["bytes"] == sum(e.get("size", 0) for e in entries)
    changed = next(e for e in document["files"] if e["path"] == "css/print.css")
    assert changed["old_size"] == 20
    assert changed["size"] == 19
    assert changed["source"].startswith("FileSystemFinder:")
    conflict = next(e for e in document["files"] if e["action"] == "conflict")
    assert conflict["path"] == "js/app.js"
    assert conflict["reason"].endswith("/first won")


def test_the_report_says_what_delete_removes_keeps_and_why(
    scene: Path, static_root: Path
) -> None:
    """Ours and stale, removed; a file we never wrote, kept as not ours; and
    a --max-delete refusal still names every stale file in the report."""
    (static_root / "theirs.txt").write_text("not ours")
    with pytest.raises(CommandError):
        report_of(scene, delete=True, max_delete=0)
    refused = json.loads((scene / "report.json").read_text())
    jsonschema.validate(refused, SCHEMA)
    assert refused["deletions"] == {
        "stale": ["stale.txt"],
        "unowned": ["theirs.txt"],
        "reason": "more than --max-delete 0",
    }
    done = report_of(scene, delete=True)
    jsonschema.validate(done, SCHEMA)
    assert done["schema_version"] == 2
    assert done["deletions"] == {"stale": ["stale.txt"], "unowned": ["theirs.txt"]}
    assert (static_root / "theirs.txt").exists()
    assert not (static_root / "stale.txt").exists()
    assert report_of(scene)["deletions"] == {}  # no --delete


def test_without_a_record_delete_removes_nothing_and_the_report_says_why(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", TREE))]
    write_tree(static_root, {"old.css": "left by stock"})
    document = report_of(tmp_path, delete=True)
    assert document["deletions"] == {
        "stale": [],
        "unowned": [],
        "reason": "no sync record yet: nothing here is known to be ours",
    }
    assert (static_root / "old.css").exists()


def test_human_dry_run_output_matches_the_golden_file(
    scene: Path, static_root: Path
) -> None:
    result = run_collectstatic(dry_run=True, delete=True, verbosity=1)
    text = result.stdout.replace(str(scene), "<tmp>")
    # Django 6.0 moved some messages to -v 2 and added counts to the summary.
    series = "django6" if django.VERSION >= (6, 0) else "django4-5"
    golden = GOLDEN / f"dry_run_v1.{series}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_no_change_dry_run_counts_are_true(scene: Path, static_root: Path) -> None:
    run_collectstatic(delete=True)
    result = run_collectstatic(dry_run=True)
    conflict = ", 1 skipped due to conflict" if django.VERSION >= (6, 0) else ""
    assert result.stdout.endswith(
        f"\n0 static files copied to '{static_root}', 5 unmodified{conflict}.\n"
    )
    assert "post-processing: up to date" in result.stdout


def test_check_exits_1_when_anything_would_change(scene: Path) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(check=True)
    assert raised.value.returncode == 1
    assert str(raised.value).startswith("The destination is not up to date: ")
    run_collectstatic()
    run_collectstatic(check=True)  # up to date: no error


def test_real_run_report_and_phases_at_verbosity_2(scene: Path) -> None:
    document = report_of(scene, verbosity=0)
    assert document["dry_run"] is False
    assert set(document["timings"]) >= {"find", "transfer", "post-process"}
    assert document["post_processing"]["status"] == "ran"
    result = run_collectstatic(verbosity=2)
    lines = result.stdout.splitlines()
    assert lines[-4].startswith("Phases: find ")
    assert lines[-3] == "Bytes copied: 0."
    assert lines[-2] == ""


@pytest.mark.parametrize("verbosity", [0, 1, 2, 3])
def test_report_to_stdout_leaves_stdout_to_the_json_and_people_to_stderr(
    scene: Path, verbosity: int
) -> None:
    human = run_collectstatic(dry_run=True, delete=True, verbosity=verbosity)
    machine = run_collectstatic(
        report="-", dry_run=True, delete=True, verbosity=verbosity
    )
    document = json.loads(machine.stdout)
    jsonschema.validate(document, SCHEMA)
    assert document["dry_run"] is True
    assert machine.stderr == human.stdout + human.stderr
    if verbosity:
        assert "Pretending to copy '" in machine.stderr
        assert machine.stderr.endswith(  # (stock's dry run post-processes none)
            " 3 unmodified"
            + (", 1 skipped due to conflict." if django.VERSION >= (6, 0) else ".")
            + "\n"
        )


def test_real_run_report_to_stdout_with_every_line_on_stderr(scene: Path) -> None:
    result = run_collectstatic(report="-", verbosity=2)
    document = json.loads(result.stdout)
    assert document["dry_run"] is False
    assert actions(document)[:2] == [
        ("css/print.css", "changed"),
        ("css/site.css", "unchanged"),
    ]
    lines = result.stderr.splitlines()
    assert "Copying '" + str(scene / "first/css/print.css") + "'" in lines
    assert lines[-4].startswith("Phases: find ")
    assert lines[-1].startswith("2 static files copied to ")


def test_report_to_stdout_asks_its_question_on_stderr(
    scene: Path,
    static_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # input() reads it
    result = run_collectstatic(report="-", interactive=True)
    assert json.loads(result.stdout)["dry_run"] is False
    asked = capsys.readouterr()
    assert asked.out == ""
    assert asked.err.endswith(
        "This will overwrite existing files!\nAre you sure you want to do this?\n\n"
        "Type 'yes' to continue, or 'no' to cancel: "
    )


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("missing/report.json", "'{tmp}/missing' does not exist"),
        ("notes.txt/report.json", "'{tmp}/notes.txt' is not a directory"),
        ("out", "Is a directory"),
    ],
)
def test_unwritable_report_path_fails_before_anything_is_written(
    scene: Path, static_root: Path, dry_run: bool, where: str, why: str
) -> None:
    shutil.rmtree(static_root)
    (scene / "notes.txt").write_text("notes")
    (scene / "out").mkdir()
    target = scene / where
    with pytest.raises(CommandError) as raised:
        run_collectstatic(report=str(target), dry_run=dry_run)
    why = why.format(tmp=scene)
    assert str(raised.value) == f"Cannot write the report to '{target}': {why}."
    assert not static_root.exists()


def test_report_path_check_leaves_no_file_when_the_run_is_cancelled(
    scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("no\n"))
    with pytest.raises(CommandError) as raised:
        run_collectstatic(report=str(scene / "report.json"), interactive=True)
    assert str(raised.value) == "Collecting static files cancelled."
    assert not (scene / "report.json").exists()


def test_s3_dry_run_sends_no_write_and_predicts_the_real_run(
    tmp_path: Path, settings: Any, s3_server: S3Server
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    settings.STATICFILES_DIRS = [str(source)]
    bucket = Bucket(s3_server)
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": bucket.storage(S3_MANIFEST),
    }
    run_collectstatic(parallel=8)
    (source / "css/print.css").write_text("p { color: #222; }\n")
    before = bucket.contents(record=True)
    s3_server.reset_requests()
    dry = report_of(tmp_path, dry_run=True, parallel=8)
    assert not {"PUT", "DELETE", "POST"} & set(kinds(s3_server.requests()))
    assert bucket.contents(record=True) == before
    assert dry["requests"] == {"GetObject": 1, "ListObjectsV2": 1}
    real = report_of(tmp_path, parallel=8)
    assert actions(dry) == actions(real)
    assert dry["post_processing"]["would_write"] == real["post_processing"]["written"]
    assert (
        real["requests"]["PutObject"] == 4 + len(real["post_processing"]["written"]) - 3
        or real["requests"]
    )


def progress_project(tmp_path: Path, storage: str | None = None) -> dict[str, str]:
    """200 source files and a settings module; the environment to run in."""
    source = write_tree(tmp_path / "src", {f"f{i}.txt": f"{i}\n" for i in range(200)})
    storages = ""
    if storage is not None:
        storages = (
            f"STORAGES = {{**STORAGES, 'staticfiles': {{'BACKEND': {storage!r}}}}}"
        )
    (tmp_path / "progress_settings.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *
            STATIC_ROOT = {str(tmp_path / "root")!r}
            STATICFILES_DIRS = [{str(source)!r}]
            """
        )
        + storages
        + "\n"
    )
    return {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": "progress_settings",
    }


COLLECTSTATIC = [sys.executable, "-m", "django", "collectstatic", "--noinput"]


def on_tty(
    env: dict[str, str], *extra: str, interrupt_on: str | None = None
) -> tuple[str, int]:
    """What a run shows on a terminal (its stderr), and its exit status; a
    Ctrl-C once ``interrupt_on`` has been shown."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*COLLECTSTATIC, *extra], env=env, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
        if interrupt_on is not None and interrupt_on.encode() in shown:
            process.send_signal(signal.SIGINT)
            interrupt_on = None
    status = process.wait(timeout=60)
    os.close(leader)
    return shown.decode().replace("\r\n", "\n"), status  # the TTY's line ends


def test_progress_line_only_on_a_terminal_at_verbosity_1(tmp_path: Path) -> None:
    env = progress_project(tmp_path)
    shown, status = on_tty(env, "--force")
    assert status == 0
    last = shown.split("\r")[-1]
    assert re.fullmatch(r"Collecting: 200/200 files \(100%\), \d+\.\d s\x1b\[K\n", last)
    shown, status = on_tty(env)  # read this time: the bytes are known
    assert shown.split("\r")[-1].startswith(
        "Collecting: 200/200 files (100%), 690 B/690 B, "
    )
    (tmp_path / "src/f7.txt").unlink()
    shown, status = on_tty(env, "--delete")
    ended = [line.split("\r")[-1] for line in shown.split("\n") if line]
    assert status == 0 and len(ended) == 3, ended
    assert re.fullmatch(r"Listing: 20[0-9] files, [\d.]+ s\x1b\[K", ended[0]), ended
    assert ended[1].startswith("Collecting: 199/199 files (100%), 688 B/688 B, ")
    assert re.fullmatch(r"Deleting: 1/1 files \(100%\), [\d.]+ s\x1b\[K", ended[2])
    assert on_tty(env, "--force", "-v", "0") == ("", 0)
    piped = subprocess.run(
        [*COLLECTSTATIC, "--force"], env=env, capture_output=True, text=True, check=True
    )
    assert piped.stderr == ""


def test_a_progress_line_is_ended_before_the_next_message_after_ctrl_c(
    tmp_path: Path,
) -> None:
    env = progress_project(tmp_path, "tests.storages.SlowStorage")
    env["SLOW_STORAGE_DELAY"] = "0.05"
    shown, status = on_tty(env, interrupt_on="Collecting: ")
    assert status == 130
    line, _, after = shown.rpartition("\x1b[K\n")
    last = line.split("\r")[-1]
    assert re.fullmatch(r"Collecting: \d+/200 files \(\d+%\), [\d.]+ s", last), last
    assert re.fullmatch(
        r"CommandError: Interrupted: \d+ file\(s\) collected before the "
        r"interrupt; run collectstatic again to finish\.\n",
        after,
    ), after


def test_a_progress_line_is_ended_before_a_failed_post_process_says_so(
    tmp_path: Path,
) -> None:
    env = progress_project(tmp_path, "tests.storages.CheckingStorage")
    write_tree(tmp_path / "src", {"zz.css": "a{background:url(missing.png)}"})
    shown, status = on_tty(env)
    assert status == 1
    before, _, after = shown.partition("Post-processing 'zz.css' failed!\n\n")
    ended = r"\rPost-processing: \d+/201 files \(\d+%\), [\d.]+ s\x1b\[K\n$"
    assert re.search(ended, before), before
    assert "Post-processing: " not in after, after  # (stock's error follows)


def test_a_run_that_fails_before_its_deletions_reports_why_none_ran(
    tmp_path: Path, settings: Any, static_root: Path, monkeypatch: Any
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a{}", "b.css": "b{}"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "tests.storages.FailingStorage"},
    }
    run_collectstatic()
    (source / "a.css").unlink()
    (source / "b.css").write_text("b{color:red}")
    monkeypatch.setenv("FAIL_ON", "b.css")
    report = tmp_path / "report.json"
    with pytest.raises(CommandError):
        run_collectstatic(delete=True, report=str(report))
    assert json.loads(report.read_text())["deletions"] == {
        "stale": ["a.css"],
        "unowned": [],
        "reason": "not run: an error or an interrupt came first",
    }
    assert (static_root / "a.css").exists()
    monkeypatch.delenv("FAIL_ON")
    run_collectstatic(delete=True, report=str(report))
    assert json.loads(report.read_text())["deletions"] == {
        "stale": ["a.css"],
        "unowned": [],
    }
    assert not (static_root / "a.css").exists()


def test_a_failed_post_process_is_reported_against_its_file(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    files = {"css/b.css": "b { background: url(../img/gone.png) }\n"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    report = tmp_path / "report.json"
    with pytest.raises((CommandError, ValueError)):  # (ValueError before 6.1)
        run_collectstatic(report=str(report))
    document = json.loads(report.read_text())
    [error] = document["errors"]
    assert error["path"] == "css/b.css"
    # It was copied, and is there: its post-processing failed.
    assert [(f["path"], f["action"]) for f in document["files"]] == [
        ("css/b.css", "new")
    ]
    assert document["totals"]["new"]["files"] == 1
    assert error["reason"].startswith(
        "ValueError: The file 'img/gone.png' could not be found with <"
    ), error


@pytest.mark.parametrize(
    "backend", [MANIFEST, "tests.storages.SeparateManifestStorage"]
)
def test_check_fails_when_only_the_manifest_would_change(
    tmp_path: Path, settings: Any, static_root: Path, backend: str
) -> None:
    files = {"css/a.css": "a{}", "notes.txt": "n"}
    source = write_tree(tmp_path / "src", files)
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    run_collectstatic()
    run_collectstatic(check=True)  # up to date (the manifest kept elsewhere too)
    (source / "notes.txt").unlink()  # its copies stay; the manifest drops it

    with pytest.raises(CommandError) as raised:
        run_collectstatic(check=True)

    assert str(raised.value) == (
        "The destination is not up to date: 1 change(s) would be made."
    )


@pytest.mark.parametrize(
    "backend",
    ["tests.storages.OwnFileHashStorage", "tests.storages.OwnPostProcessStorage"],
)
def test_check_fails_when_a_storage_we_cannot_simulate_would_post_process(
    tmp_path: Path, settings: Any, static_root: Path, backend: str
) -> None:
    source = write_tree(tmp_path / "src", {"css/a.css": "a{}"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    run_collectstatic()
    hashed = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    (static_root / hashed["css/a.css"]).unlink()  # a real run writes it again

    dry = run_collectstatic(dry_run=True)
    stdout = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(check=True, stdout=stdout)

    assert stdout.getvalue().endswith(
        f"\n0 static files copied to '{static_root}', 1 unmodified.\n"
    )  # stock's summary, as when files would change
    name = backend.rpartition(".")[2]
    status = f"not simulated ({name}.post_process() is called with dry_run=True"
    status += ", as by stock)"
    assert f"post-processing: {status}\n" in dry.stdout, dry.stdout
    assert str(raised.value) == f"--check: post-processing {status}."


def test_check_fails_when_post_processing_could_not_be_simulated(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    """A reference to a missing file stops every real post-process; the dry
    run cannot simulate it, so --check fails even when no file would change
    (the failed runs copied them all)."""
    source = write_tree(tmp_path / "src", {"css/a.css": "a { color: red }\n"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    write_tree(source, {"css/b.css": "b { background: url(../img/gone.png) }\n"})
    with pytest.raises((CommandError, ValueError)):  # (ValueError before 6.1)
        run_collectstatic()  # (the files land; post-processing fails)
    with pytest.raises(CommandError) as raised:
        run_collectstatic(check=True)
    assert raised.value.returncode == 1
    assert re.fullmatch(
        r"--check: post-processing not simulated \((ValueError|CommandError): "
        r"The file 'img/gone\.png' could not be found with <[^>]+>\.\)\.",
        str(raised.value),
    ), str(raised.value)


def test_a_minified_run_is_reported_within_the_schema(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a {  color: red;  }\n"})
    settings.STATICFILES_DIRS = [str(source)]
    report = tmp_path / "report.json"
    run_collectstatic(minify=True, report=str(report))
    document = json.loads(report.read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["files"][0]["minify"] == {
        "minified": True,
        "before": 20,
        "after": 12,
    }
    assert document["storage"]["class"] == (
        "django.contrib.staticfiles.storage.StaticFilesStorage"
    )


@pytest.mark.parametrize(
    ("option", "flag"),
    [
        ({"check": True}, "--check"),
        ({"report": "-"}, "--report"),
        ({"parallel": 4}, "--parallel"),
        ({"force": True}, "--force"),
        ({"verify": True}, "--verify"),
        ({"cache_dir": "/tmp"}, "--cache-dir"),
    ],
)
def test_options_that_link_would_ignore_are_refused(
    sources: Path, static_root: Path, option: dict[str, Any], flag: str
) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(link=True, **option)
    assert str(raised.value) == (
        f"{flag} cannot be combined with --link (--link runs stock's own collection)."
    )
    assert raised.value.returncode == 2
    assert not static_root.exists()


#: Linux's device that is always full.
FULL_DISK = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@FULL_DISK
def test_a_report_that_cannot_be_written_does_not_hide_the_runs_own_error(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_tree(tmp_path / "src", {"a.css": "a", "bad.css": "x"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATIC_ROOT = str(tmp_path / "root")
    failing = {"BACKEND": "tests.storages.FailingStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": failing}
    monkeypatch.setenv("FAIL_ON", "bad")
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(stderr=stderr, report="/dev/full")  # a full disk
    assert str(raised.value) == "1 static file could not be collected: bad.css."
    assert stderr.getvalue().splitlines() == [
        "Could not collect 'bad.css': OSError: simulated failure writing bad.css",
        "Could not write the report: [Errno 28] No space left on device",
    ]


@FULL_DISK
def test_a_report_that_cannot_be_written_fails_a_run_called_while_handling_an_error(
    tmp_path: Path, settings: Any
) -> None:
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {"a.css": "a"}))]
    settings.STATIC_ROOT = str(tmp_path / "root")
    try:
        raise ValueError("a deploy script's own error, being handled")
    except ValueError:
        with pytest.raises(CommandError) as raised:
            run_collectstatic(report="/dev/full")
    assert str(raised.value) == (
        "Could not write the report: [Errno 28] No space left on device"
    )


@pytest.mark.parametrize(
    "name", ["css/site.css", ".collectstatic-plus.json", "new.json", "link"]
)
def test_a_report_inside_the_destination_is_refused(
    tmp_path: Path, sources: Path, static_root: Path, name: str
) -> None:
    """Not even a dry run's report is written into STATIC_ROOT (over a
    collected file or the sync record, or as a file anyone could fetch),
    nor through a symlink into it."""
    run_collectstatic()
    before = read_tree(static_root, record=True)
    target = static_root / name
    if name == "link":
        target = tmp_path / "report.json"
        target.symlink_to(static_root / "css/site.css")
    with pytest.raises(CommandError) as raised:
        run_collectstatic(dry_run=True, report=str(target))
    assert str(raised.value) == (
        f"Cannot write the report to '{target}': it is inside the "
        f"destination ('{static_root}'); choose a path outside it."
    )
    assert read_tree(static_root, record=True) == before


def test_a_run_that_stops_before_collecting_leaves_no_earlier_report(
    tmp_path: Path, sources: Path, static_root: Path
) -> None:
    report = tmp_path / "report.json"
    run_collectstatic(report=str(report))
    assert json.loads(report.read_text())["errors"] == []
    with pytest.raises(CommandError):
        run_collectstatic(report=str(report), max_delete=1)  # (no --delete)
    assert report.read_text() == ""


@pytest.mark.parametrize("where", ["first/css/site.css", "first/new.json"])
def test_a_report_in_a_static_files_folder_is_refused(
    scene: Path, static_root: Path, where: str
) -> None:
    """It would be collected next time (and a source was emptied)."""
    before = read_tree(scene / "first")
    target = scene / where
    with pytest.raises(CommandError) as raised:
        run_collectstatic(report=str(target))
    assert str(raised.value) == (
        f"Cannot write the report to '{target}': it is inside a static files "
        f"folder ('{scene / 'first'}'), so it would be collected; choose a path "
        "outside it."
    )
    assert read_tree(scene / "first") == before


def test_a_report_is_written_whole_or_not_at_all(
    scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collectstatic_plus import report as report_module

    replace = os.replace

    def full(source: str, target: str) -> None:
        if not target.endswith("report.json"):
            return replace(source, target)
        raise OSError(28, "No space left on device")  # (the disk filled up)

    monkeypatch.setattr(report_module.os, "replace", full)
    target = scene / "report.json"
    with pytest.raises(CommandError) as raised:
        run_collectstatic(report=str(target))
    assert str(raised.value) == (
        "Could not write the report: [Errno 28] No space left on device"
    )
    assert sorted(path.name for path in scene.iterdir()) == [
        "first",
        "second",
        "static_root",
    ]


def test_the_report_gives_the_options_as_the_run_takes_them(scene: Path) -> None:
    report = scene / "report.json"
    run_collectstatic(report=str(report), delete_unowned=True, parallel=2)
    assert json.loads(report.read_text())["options"] == {
        "dry_run": False,
        "clear": False,
        "link": False,
        "post_process": True,
        "ignore_patterns": ["CVS", ".*", "*~"],
        "use_default_ignore_patterns": True,
        "parallel": 2,
        "force": False,
        "verify": False,
        "max_delete": None,
        "check": False,
        "delete": True,
        "delete_unowned": True,
        "keep_manifests": 3,
        "cache_dir": None,
        "minify": False,
    }


def test_a_report_through_a_symlink_is_written_where_it_points(scene: Path) -> None:
    real, link = scene / "real.json", scene / "link.json"
    real.write_text("old")
    link.symlink_to(real.name)
    run_collectstatic(report=str(link))
    assert link.is_symlink()
    assert json.loads(real.read_text())["errors"] == []


def test_a_manifest_kept_elsewhere_is_not_written_again_when_it_is_the_same(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    """As a dry run says: no manifest change, and none made."""
    source = write_tree(tmp_path / "src", {"css/a.css": "a{}"})
    settings.STATICFILES_DIRS = [str(source)]
    backend = "tests.storages.SeparateManifestStorage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    run_collectstatic()
    manifest = tmp_path / "manifest" / "staticfiles.json"
    before = manifest.stat()
    report = tmp_path / "report.json"
    run_collectstatic(dry_run=True, report=str(report))
    dry = json.loads(report.read_text())["post_processing"]
    run_collectstatic(report=str(report))
    real = json.loads(report.read_text())["post_processing"]
    assert dry["manifest_changes"] is real["manifest_changes"] is False
    after = manifest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize(
    ("dry_run", "said"),
    [
        (True, "0 file(s) would be processed; the manifest would be written"),
        (False, "0 file(s) were processed; the manifest was written"),
    ],
)
def test_the_manifest_written_again_is_said_in_the_singular(
    dry_run: bool, said: str
) -> None:
    from collectstatic_plus.report import Report

    report = Report(dry_run=dry_run)
    why = "staticfiles.json is not the one the last run wrote"
    report.post_processing = {"mode": "incremental", "files": {}, "reason": why}
    assert report.post_processing_plan() == [
        f"post-processing: incremental, {said} again: {why}"
    ]
