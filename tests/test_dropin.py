"""Drop-in: with no ``--parallel``, output and results equal stock's exactly.

Each scenario runs Django's own command and ours against the same sources and
the same destination path, and compares stdout, stderr and the tree.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

import django
import pytest
from django.contrib.staticfiles.management.commands import collectstatic as stock
from django.core.management import CommandError

from .conftest import (
    RECORD,
    Command,
    Run,
    read_tree,
    run_collectstatic,
    run_stock,
    stock_view,
    write_tree,
)

MANIFEST = {
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    }
}

WHITENOISE = {
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    }
}


@pytest.fixture
def two_sources(tmp_path: Path, settings: Any) -> Path:
    """Two source dirs with an overlapping path, plus a prefixed one."""
    first = write_tree(
        tmp_path / "first",
        {
            "css/site.css": "body { background: url('../img/bg.png'); }\n",
            "img/bg.png": b"\x89PNG first",
            "js/app.js": "console.log('first');\n",
            "notes.txt": "first\n",
            ".hidden": "x",
        },
    )
    second = write_tree(
        tmp_path / "second",
        {"js/app.js": "console.log('second');\n", "js/other.js": "var o;\n"},
    )
    prefixed = write_tree(tmp_path / "prefixed", {"lib.js": "var lib;\n"})
    settings.STATICFILES_DIRS = [str(first), str(second), ("vendor", str(prefixed))]
    return tmp_path


def tree_with_links(root: Path) -> dict[str, tuple[bool, bytes]]:
    return {
        name: (os.path.islink(root / name), data)
        for name, data in read_tree(root).items()
    }


def both(static_root: Path, prepare: Any, **options: Any) -> tuple[Run, Run]:
    """Run stock then ours from the same starting state; compare trees."""
    results = []
    trees = []
    for runner in (run_stock, run_collectstatic):
        shutil.rmtree(static_root, ignore_errors=True)
        prepare(runner)
        result = runner(**options)
        results.append(Run(stock_view(result.stdout), result.stderr))
        trees.append(tree_with_links(static_root) if static_root.exists() else {})
    assert trees[0] == trees[1]
    return results[0], results[1]


def nothing(runner: Any) -> None:
    pass


def collected_before(runner: Any) -> None:
    runner(verbosity=0)


def stale_files(static_root: Path) -> Any:
    def prepare(runner: Any) -> None:
        write_tree(static_root, {"old.css": "old", "gone/old.js": "old"})

    return prepare


SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "verbosity_0": {"verbosity": 0},
    "verbosity_2": {"verbosity": 2},
    "verbosity_3": {"verbosity": 3},
    "dry_run": {"dry_run": True, "verbosity": 2},
    "ignore": {"ignore_patterns": ["*.txt", "vendor"], "verbosity": 2},
    # Stock normalises each pattern (os.path.normpath) before matching.
    "ignore_unnormalised": {"ignore_patterns": ["js/", "./notes.txt", "x/../img"]},
    "no_default_ignore": {"use_default_ignore_patterns": False, "verbosity": 2},
    "link": {"link": True, "verbosity": 2},
    "link_dry_run": {"link": True, "dry_run": True},
}


@pytest.mark.parametrize("options", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_output_and_tree_equal_stock(
    two_sources: Path, static_root: Path, options: dict[str, Any]
) -> None:
    ours_stock, ours = both(static_root, nothing, **options)
    assert ours.stdout == ours_stock.stdout
    assert ours.stderr == ours_stock.stderr


@pytest.mark.parametrize("verbosity", [1, 2])
@pytest.mark.parametrize("link", [False, True])
def test_rerun_reports_unmodified_like_stock(
    two_sources: Path, static_root: Path, verbosity: int, link: bool
) -> None:
    theirs, ours = both(static_root, collected_before, verbosity=verbosity, link=link)
    assert ours.stdout == theirs.stdout
    assert "unmodified" in ours.stdout


def test_switching_copy_to_link_replaces_files_like_stock(
    two_sources: Path, static_root: Path
) -> None:
    theirs, ours = both(static_root, collected_before, link=True, verbosity=2)
    assert ours.stdout == theirs.stdout
    assert os.path.islink(static_root / "css" / "site.css")


@pytest.mark.parametrize("dry_run", [False, True])
def test_clear_deletes_like_stock(
    two_sources: Path, static_root: Path, dry_run: bool
) -> None:
    theirs, ours = both(
        static_root, stale_files(static_root), clear=True, dry_run=dry_run, verbosity=2
    )
    assert ours.stdout == theirs.stdout
    assert (static_root / "old.css").exists() is dry_run


@pytest.mark.parametrize(
    "backend", [MANIFEST, WHITENOISE], ids=["django", "whitenoise"]
)
@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("post_process", [True, False])
def test_manifest_post_processing_equals_stock(
    two_sources: Path,
    static_root: Path,
    settings: Any,
    post_process: bool,
    dry_run: bool,
    backend: dict[str, Any],
) -> None:
    settings.STORAGES = {**settings.STORAGES, **backend}
    theirs, ours = both(
        static_root, nothing, post_process=post_process, dry_run=dry_run, verbosity=2
    )
    assert ours.stdout == theirs.stdout
    # Stock's dry run post-processes nothing with these storages.
    assert ("post-processed" in ours.stdout) is (post_process and not dry_run)


def test_post_process_failure_is_reported_like_stock(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    broken = write_tree(tmp_path / "broken", {"a.css": "x { background: url(m.png) }"})
    settings.STATICFILES_DIRS = [str(broken)]
    settings.STORAGES = {**settings.STORAGES, **MANIFEST}
    errors = []
    for runner in (run_stock, run_collectstatic):
        shutil.rmtree(static_root, ignore_errors=True)
        with pytest.raises(Exception) as raised:
            runner()
        errors.append(raised.value)
    assert type(errors[1]) is type(errors[0])
    assert str(errors[1]) == str(errors[0])
    assert "m.png" in str(errors[1])
    expected = CommandError if django.VERSION >= (6, 1) else ValueError
    assert isinstance(errors[1], expected)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_storage_that_fails_post_processing_fails_a_dry_run_like_stock(
    tmp_path: Path, static_root: Path, settings: Any, dry_run: bool
) -> None:
    """Stock calls post_process(dry_run=True): a storage that checks even
    then fails stock's dry run, and ours (after printing its plan)."""
    broken = write_tree(
        tmp_path / "broken", {"a.css": "x { background: url(missing.png) }"}
    )
    settings.STATICFILES_DIRS = [str(broken)]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "tests.storages.CheckingStorage"},
    }
    errors = []
    for runner in (run_stock, run_collectstatic):
        shutil.rmtree(static_root, ignore_errors=True)
        with pytest.raises(Exception) as raised:
            runner(dry_run=dry_run)
        errors.append(raised.value)
    assert type(errors[1]) is type(errors[0])
    assert str(errors[1]) == str(errors[0]) == "'a.css' refers to missing.png"
    assert not static_root.exists() if dry_run else (static_root / "a.css").exists()


def test_summary_line_matches_installed_django(
    two_sources: Path, static_root: Path
) -> None:
    write_tree(static_root, {"stale.txt": "x"})
    result = run_collectstatic(clear=True)
    root = str(static_root)
    if django.VERSION >= (6, 0):
        expected = (
            f"\n1 static file deleted, 6 static files copied to '{root}', "
            "1 skipped due to conflict.\n"
        )
    else:
        # Before 6.0 these two messages were printed at verbosity 1.
        expected = (
            "Deleting 'stale.txt'\n"
            "Found another file with the destination path 'js/app.js'. It will be "
            "ignored since only the first encountered file is collected. If this "
            "is not what you want, make sure every static file has a unique path.\n"
            f"\n6 static files copied to '{root}'.\n"
        )
    assert result.stdout == expected


@pytest.mark.parametrize("answer", ["yes", "no"])
@pytest.mark.parametrize("clear", [False, True])
def test_prompt_equals_stock(
    two_sources: Path, static_root: Path, answer: str, clear: bool
) -> None:
    write_tree(static_root, {"existing.css": "x"})
    prompts = []
    outcomes = []
    for runner in (run_stock, run_collectstatic):
        with mock.patch("builtins.input", return_value=answer) as ask:
            try:
                runner(interactive=True, clear=clear, dry_run=True)
                outcomes.append("ran")
            except CommandError as error:
                outcomes.append(str(error))
        prompts.append(ask.call_args.args[0])
    assert prompts[1] == prompts[0]
    assert outcomes[1] == outcomes[0]
    assert ("DELETE ALL FILES" in prompts[1]) is clear
    if answer == "no":
        assert outcomes[1] == "Collecting static files cancelled."


def test_the_sync_record_alone_does_not_make_the_prompt_ask(
    two_sources: Path, static_root: Path
) -> None:
    run_collectstatic()
    for path in static_root.iterdir():  # rm -rf STATIC_ROOT/* spares dotfiles
        if path.name != RECORD:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    with mock.patch("builtins.input") as ask:
        run_collectstatic(interactive=True)
    ask.assert_not_called()  # as stock over an empty STATIC_ROOT
    assert (static_root / "css/site.css").exists()
    with (
        mock.patch("builtins.input", return_value="no") as ask,
        pytest.raises(CommandError),
    ):
        run_collectstatic(interactive=True)  # a static file is there: it asks
    ask.assert_called_once()


@pytest.mark.parametrize("link", [False, True])
def test_set_options_then_collect_leaves_the_storage_as_it_was(
    two_sources: Path, static_root: Path, link: bool
) -> None:
    """Django's own tests call these two hooks without ``execute``."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    command = Command()
    command.set_options(  # as Django's test_storage.TestCollectionManifestStorage
        interactive=False,
        verbosity=0,
        link=link,
        clear=False,
        dry_run=False,
        post_process=True,
        use_default_ignore_patterns=True,
        ignore_patterns=[],
    )
    command.collect()
    assert "listdir" not in vars(staticfiles_storage._wrapped)


def test_every_stock_option_keeps_its_strings_dest_and_default() -> None:
    def actions(command: Any) -> dict[str, tuple[tuple[str, ...], object, object]]:
        parser = command.create_parser("manage.py", "collectstatic")
        return {
            action.dest: (tuple(action.option_strings), action.default, action.nargs)
            for action in parser._actions
        }

    theirs, ours = actions(stock.Command()), actions(Command())
    assert {dest: ours[dest] for dest in theirs} == theirs
    assert set(ours) - set(theirs) == {
        "parallel",
        "force",
        "verify",
        "delete",
        "max_delete",
        "keep_manifests",
        "report",
        "check",
        "minify",
        "cache_dir",
        "delete_unowned",
    }


@pytest.mark.parametrize(
    ("typed", "dest", "value"),
    [
        (["--d"], "dry_run", True),  # not --delete, --delete-unowned
        (["--c"], "clear", True),  # not --check, --cache-dir
        (["--p", "x"], "pythonpath", "x"),  # not --parallel
        (["--forc"], "force_color", True),  # not --force
        (["--no-p"], "post_process", False),
    ],
)
def test_stock_abbreviations_keep_their_meaning_beside_our_options(
    typed: list[str], dest: str, value: object
) -> None:
    def parsed(command: Any) -> object:
        parser = command.create_parser("manage.py", "collectstatic")
        return getattr(parser.parse_args(typed), dest)

    assert parsed(stock.Command()) == value
    assert parsed(Command()) == value


def test_abbreviations_of_our_options_alone_are_ours() -> None:
    parser = Command().create_parser("manage.py", "collectstatic")
    assert parser.parse_args(["--pa"]).parallel == "auto"
    assert parser.parse_args(["--force"]).force is True  # (stock: --force-color)
    with pytest.raises(CommandError, match="ambiguous option: --del could match"):
        parser.parse_args(["--del"])  # --delete or --delete-unowned


def test_symlink_to_remote_destination_is_refused(
    two_sources: Path, settings: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "tests.storages.RemoteLikeStorage"},
    }
    with pytest.raises(CommandError) as raised:
        run_collectstatic(link=True)
    assert str(raised.value) == "Can't symlink to a remote destination."
