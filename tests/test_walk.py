"""The fast listing for Django's own finders yields exactly what their
``list`` yields: same paths, same storages, same order, plus stat tokens."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.finders import (
    AppDirectoriesFinder,
    BaseFinder,
    FileSystemFinder,
)
from django.test import override_settings

from collectstatic_plus.sources import fast_list, stat_token

from .conftest import write_tree

PATTERNS = ["CVS", ".*", "*~", "sub/*.txt", "sub/deeper"]
TREE = {
    "a.css": "a",
    ".hidden": "h",
    "b~": "b",
    "CVS/x.js": "x",
    "sub/c.js": "c",
    "sub/skip.txt": "ignored by its full path",
    "sub/keep.txt.map": "m",
    "sub/deeper/d.png": "d",  # "sub/deeper" names a directory: not ignored
    "x~/y.js": "ignored with its directory",
    "with space/é ü.css": "u",
    "q?#%&.js": "q",
    "z/.git/config": "hidden directory",
}


def make_root(root: Path) -> Path:
    write_tree(root, TREE)
    (root / "linked").symlink_to(root / "sub" / "deeper", target_is_directory=True)
    (root / "dangling.css").symlink_to(root / "nowhere.css")
    return root


def both(finder: BaseFinder) -> tuple[list[Any], list[Any]]:
    """(stock's listing, the fast one) as (path, storage id, token) triples."""
    fast = fast_list(finder, PATTERNS)
    assert fast is not None, "the fast path should apply to this finder"
    ours = [(path, id(storage), token) for path, storage, token in fast]
    theirs = [
        (path, id(storage), stat_token(storage, path))
        for path, storage in finder.list(PATTERNS)
    ]
    return theirs, ours


def test_filesystem_finder_listing_is_stocks_with_prefixes_and_odd_names(
    tmp_path: Path,
) -> None:
    one, two = make_root(tmp_path / "one"), make_root(tmp_path / "two")
    (tmp_path / "a-file").write_text("not a directory")
    dirs = [("pre", str(one)), str(two), str(tmp_path / "missing")]
    with override_settings(STATICFILES_DIRS=[*dirs, str(tmp_path / "a-file")]):
        theirs, ours = both(FileSystemFinder())
    assert ours == theirs
    paths = [path for path, _id, _token in ours]
    assert sorted(paths[: len(paths) // 2]) == sorted(
        [
            "a.css",
            "dangling.css",
            "q?#%&.js",
            "sub/c.js",
            "sub/keep.txt.map",
            "sub/deeper/d.png",
            "with space/é ü.css",
            "linked/d.png",
        ]
    )
    tokens = {path: token for path, _id, token in ours[: len(paths) // 2]}
    assert tokens["dangling.css"] is None
    stat = (one / "sub" / "c.js").stat()
    fields = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    packed = struct.pack("<QQqq", *fields)
    hashed = hashlib.blake2b(packed, digest_size=8).digest()
    assert tokens["sub/c.js"] == int.from_bytes(hashed, "little")


def test_app_directories_finder_listing_is_stocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for app in ("walkapp_one", "walkapp_two", "walkapp_bare"):
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
    make_root(tmp_path / "walkapp_one" / "static")
    write_tree(tmp_path / "walkapp_two" / "static", {"two/app.js": "2"})
    monkeypatch.syspath_prepend(str(tmp_path))
    apps = ["walkapp_one", "walkapp_two", "walkapp_bare", "django.contrib.staticfiles"]
    try:
        with override_settings(INSTALLED_APPS=apps):
            theirs, ours = both(AppDirectoriesFinder())
    finally:  # the override imported them: forget them, pass or fail
        for app in apps[:3]:
            sys.modules.pop(app, None)
    assert ours == theirs
    assert [path for path, _id, _token in ours][-1] == os.path.join("two", "app.js")


def test_a_finder_subclass_is_listed_by_its_own_list(tmp_path: Path) -> None:
    class Mine(FileSystemFinder):
        pass

    with override_settings(STATICFILES_DIRS=[str(make_root(tmp_path / "r"))]):
        assert fast_list(Mine(), PATTERNS) is None
        assert fast_list(FileSystemFinder(), PATTERNS) is not None


def test_no_ignore_patterns_lists_everything(tmp_path: Path) -> None:
    with override_settings(STATICFILES_DIRS=[str(make_root(tmp_path / "r"))]):
        finder = FileSystemFinder()
        fast = fast_list(finder, [])
        assert fast is not None
        paths = [path for path, _storage, _token in fast]
        assert paths == [path for path, _storage in finder.list([])]
    assert {".hidden", "b~", "CVS/x.js", "z/.git/config"} <= set(paths)
