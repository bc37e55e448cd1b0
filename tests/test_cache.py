"""The build cache: a fresh container (empty STATIC_ROOT) where little changed
costs what the change costs, and the result is what stock's complete run
gives, byte for byte."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError

from .conftest import RECORD, read_tree, run_collectstatic, run_stock, write_tree
from .test_postprocess_incremental import COMPRESSED, MANIFEST, TREE, WHITENOISE


def use(settings: Any, root: Path, source: Path, backend: str) -> None:
    settings.STATIC_ROOT = str(root)
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils.functional import empty

    staticfiles_storage._wrapped = empty


def ours(tmp_path: Path, name: str, **options: Any) -> dict[str, Any]:
    """Our run with the cache; its report's post_processing."""
    report = tmp_path / f"{name}.json"
    run_collectstatic(verbosity=0, report=str(report), **options)
    document: dict[str, Any] = json.loads(report.read_text())
    return document["post_processing"]


def without_record(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in read_tree(root).items() if k != RECORD}


def first_build(tmp_path: Path, settings: Any) -> tuple[Path, Path]:
    """TREE's sources, built once into build1 with a new cache: both."""
    source = write_tree(tmp_path / "src", TREE)
    cache = tmp_path / "cache"
    use(settings, tmp_path / "build1", source, MANIFEST)
    ours(tmp_path, "first", cache_dir=str(cache))
    return source, cache


def change(source: Path) -> None:
    (source / "img/h.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    later = time.time() + 20
    os.utime(source / "img/h.svg", (later, later))


@pytest.mark.parametrize(
    ("backend", "keep_only_hashed"),
    [(MANIFEST, False), (WHITENOISE, False), (WHITENOISE, True)],
)
def test_a_fresh_container_reuses_the_cache_and_leaves_what_stock_leaves(
    tmp_path: Path, settings: Any, backend: str, keep_only_hashed: bool
) -> None:
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    source = write_tree(tmp_path / "src", TREE)
    cache = tmp_path / "cache"
    use(settings, tmp_path / "build1", source, backend)
    first = ours(tmp_path, "first", cache_dir=str(cache))
    assert (first["mode"], first["cache"]["stored"] > 0) == ("full", True)

    change(source)
    use(settings, tmp_path / "stock", source, backend)
    run_stock(verbosity=0)
    use(settings, tmp_path / "build2", source, backend)  # a new, empty root
    second = ours(tmp_path, "second", cache_dir=str(cache))

    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")
    assert second["mode"] == "incremental"
    assert second["files"] == {
        "css/main.css": "references css/base.css",
        "css/base.css": "references img/h.svg",
        "img/h.svg": "changed",
    }
    assert second["cache"]["restored"] > 0 and "damaged" not in second["cache"]


def test_a_storage_with_a_save_of_its_own_gets_no_cache_and_what_stock_leaves(
    tmp_path: Path, settings: Any
) -> None:
    backend = "tests.storages.BannerManifestStorage"
    source = write_tree(tmp_path / "src", TREE)
    cache = tmp_path / "cache"
    use(settings, tmp_path / "build1", source, backend)
    first = ours(tmp_path, "first", cache_dir=str(cache))
    use(settings, tmp_path / "stock", source, backend)
    run_stock(verbosity=0)
    use(settings, tmp_path / "build2", source, backend)  # a new, empty root
    second = ours(tmp_path, "second", cache_dir=str(cache))

    # What it writes may not be what was given it: the cache cannot hold it.
    unused = {
        "unused": "BannerManifestStorage saves with a _save of its own (what "
        "it writes is not what it was given)"
    }
    assert first["cache"] == second["cache"] == unused
    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")


def test_a_damaged_cache_entry_is_never_served(tmp_path: Path, settings: Any) -> None:
    source, cache = first_build(tmp_path, settings)
    hashed = json.loads((tmp_path / "build1/staticfiles.json").read_bytes())["paths"]
    damaged = (tmp_path / "build1" / hashed["text/notes.txt"]).read_bytes()
    import hashlib

    entry = cache / "objects" / hashlib.md5(damaged).hexdigest()[:2]
    (entry / hashlib.md5(damaged).hexdigest()).write_bytes(b"not what it says")

    use(settings, tmp_path / "stock", source, MANIFEST)
    run_stock(verbosity=0)
    use(settings, tmp_path / "build2", source, MANIFEST)
    second = ours(tmp_path, "second", cache_dir=str(cache))

    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")
    assert second["cache"]["damaged"] == [hashed["text/notes.txt"]]
    assert second["files"] == {
        "text/notes.txt": "its output is missing from the destination"
    }


def test_a_reference_to_a_removed_file_fails_in_a_fresh_container_as_stock_fails(
    tmp_path: Path, settings: Any
) -> None:
    source, cache = first_build(tmp_path, settings)
    (source / "img/h.svg").unlink()  # css/base.css still refers to it
    ours(tmp_path, "kept", cache_dir=str(cache))  # build1 holds the old copy

    use(settings, tmp_path / "stock", source, MANIFEST)
    failed = (CommandError, ValueError)  # (Django < 6.1 raises the error itself)
    with pytest.raises(failed) as stock:
        run_stock(verbosity=0)
    use(settings, tmp_path / "build2", source, MANIFEST)
    with pytest.raises(failed) as raised:
        run_collectstatic(verbosity=0, cache_dir=str(cache))

    assert "The file 'img/h.svg' could not be found" in str(stock.value)
    assert type(raised.value) is type(stock.value)
    assert str(raised.value).split(" with <")[0] == str(stock.value).split(" with <")[0]
    assert not (tmp_path / "build2/staticfiles.json").exists()


@pytest.mark.parametrize("state", ["not JSON", "an unsafe path", "a bad md5"])
def test_a_foreign_cache_state_is_ignored(
    tmp_path: Path, settings: Any, state: str
) -> None:
    source, cache = first_build(tmp_path, settings)
    [path] = (cache / "states").iterdir()
    document = json.loads(path.read_bytes())
    if state == "not JSON":
        path.write_text("{")
    elif state == "an unsafe path":
        document["outputs"]["../../etc/passwd"] = "0" * 32
        path.write_text(json.dumps(document))
    else:
        document["rows"][0][1] = "nope"
        path.write_text(json.dumps(document))
    use(settings, tmp_path / "build2", source, MANIFEST)
    second = ours(tmp_path, "second", cache_dir=str(cache))
    assert (second["mode"], second["reason"]) == (
        "full",
        "no record of a complete post-process",
    )
    use(settings, tmp_path / "stock", source, MANIFEST)
    run_stock(verbosity=0)
    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")


def test_the_cache_stays_within_its_size(tmp_path: Path, settings: Any) -> None:
    source = write_tree(tmp_path / "src", TREE)
    cache = tmp_path / "cache"
    settings.COLLECTSTATIC_PLUS = {"CACHE_DIR": str(cache), "CACHE_MAX_SIZE": 2000}
    use(settings, tmp_path / "build1", source, MANIFEST)
    assert ours(tmp_path, "first")["cache"]["stored"] > 3
    sizes = [p.stat().st_size for p in (cache / "objects").rglob("*") if p.is_file()]
    assert 0 < sum(sizes) <= 2000


def test_a_dry_run_with_the_cache_writes_nothing(tmp_path: Path, settings: Any) -> None:
    source, cache = first_build(tmp_path, settings)
    objects = sorted(p for p in (cache / "objects").rglob("*") if p.is_file())
    objects[0].write_bytes(b"damaged")
    an_hour_ago = time.time() - 3600
    for path in objects:
        os.utime(path, (an_hour_ago, an_hour_ago))

    def state() -> dict[str, tuple[bytes, int]]:
        files = (p for p in cache.rglob("*") if p.is_file())
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    before = state()
    change(source)
    use(settings, tmp_path / "build2", source, MANIFEST)
    dry = ours(tmp_path, "dry", cache_dir=str(cache), dry_run=True)
    assert not (tmp_path / "build2").exists()
    # Not even marked as used, nor the damaged object removed.
    assert state() == before
    assert dry["mode"] == "incremental" and dry["cache"]["restored"] > 0
    assert len(dry["cache"]["damaged"]) == 1


def test_the_cache_evicts_the_least_recently_used_first(
    tmp_path: Path, settings: Any
) -> None:
    source, cache = first_build(tmp_path, settings)
    objects = [p for p in (cache / "objects").rglob("*") if p.is_file()]
    an_hour_ago = time.time() - 3600
    for path in objects:
        os.utime(path, (an_hour_ago, an_hour_ago))

    # Just big enough for what the first run stored: the second run's new
    # outputs push out the first run's outputs it no longer uses, not the
    # unchanged files' it has just restored (and so used).
    budget = sum(path.stat().st_size for path in objects)
    settings.COLLECTSTATIC_PLUS = {"CACHE_MAX_SIZE": budget}
    change(source)
    use(settings, tmp_path / "build2", source, MANIFEST)
    second = ours(tmp_path, "second", cache_dir=str(cache))

    assert second["cache"]["stored"] > 0
    left = [p for p in (cache / "objects").rglob("*") if p.is_file()]
    [state] = (cache / "states").iterdir()
    needed = set(json.loads(state.read_bytes())["outputs"].values())
    assert needed <= {path.name for path in left}
    assert len(left) < len(objects) + second["cache"]["stored"]
    assert sum(path.stat().st_size for path in left) <= budget


def test_a_loaded_cache_state_holds_each_name_and_md5_once(tmp_path: Path) -> None:
    """An output's name is the string its row holds, a hashed copy's MD5 is
    its source's, and object paths are strings (Python 3.12's pathlib would
    intern each MD5 it parsed, for good)."""
    from collectstatic_plus.cache import BuildCache

    cache = BuildCache(str(tmp_path), 10**6, "k" * 64)
    hashed, rewritten = "img/a.0123456789ab.png", "css/b.ba9876543210.css"
    document = {
        "rows": [
            ["css/b.css", "b" * 32, rewritten, ["img/a.png"], [rewritten], False],
            ["img/a.png", "a" * 32, hashed, [], [hashed], False],
        ],
        "outputs": {rewritten: "c" * 32, hashed: "a" * 32},
    }
    state = tmp_path / "states" / f"{'k' * 64}.json"
    state.parent.mkdir()
    state.write_text(json.dumps(document))
    cached = cache.load("k" * 64)
    assert cached is not None
    assert cached.outputs == {rewritten: "c" * 32, hashed: "a" * 32}
    row = cached.rows["img/a.png"]
    name, md5 = next((k, v) for k, v in cached.outputs.items() if k == hashed)
    assert name is row.hashed and name is row.outputs[0]
    assert md5 is row.md5
    assert cache.object_path("a" * 32) == str(tmp_path / "objects" / "aa" / ("a" * 32))


def test_a_cache_that_cannot_be_written_is_said_and_the_run_goes_on(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_bytes(b"a file")
    use(settings, tmp_path / "build", source, MANIFEST)
    run = run_collectstatic(verbosity=1, cache_dir=str(not_a_folder))

    assert run.stderr == (
        f"The build cache in '{not_a_folder}' was not updated: [Errno 20] Not a "
        f"directory: '{not_a_folder}/objects'.\n"
    )
    assert run.stdout.endswith("post-processed.\n")
    assert RECORD in read_tree(tmp_path / "build", record=True)
    assert not_a_folder.read_bytes() == b"a file"


def test_an_output_the_cache_cannot_restore_fails_the_run_naming_it(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore that cannot write (a full disk) is not a traceback: the file
    is post-processed again and fails as any other unwritable output."""
    from django.core.management.base import CommandError

    from collectstatic_plus.target import Target

    source, cache = first_build(tmp_path, settings)
    hashed = json.loads((tmp_path / "build1/staticfiles.json").read_bytes())["paths"]
    real = Target.replace

    def full_disk(self: Target, name: str, content: Any) -> bool:
        if name.startswith(hashed["text/notes.txt"]):  # (or its temporary)
            raise OSError(28, "No space left on device")
        return real(self, name, content)

    monkeypatch.setattr(Target, "replace", full_disk)
    use(settings, tmp_path / "build2", source, MANIFEST)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(verbosity=1, cache_dir=str(cache), stderr=stderr)
    assert str(raised.value) == (
        f"1 post-processed file(s) could not be written: {hashed['text/notes.txt']}."
        " The manifest was not updated."
    )
    assert stderr.getvalue() == (
        f"Could not write '{hashed['text/notes.txt']}': OSError: [Errno 28] No "
        "space left on device\n"
    )


def test_outputs_changed_by_hand_never_reach_the_cache(
    tmp_path: Path, settings: Any
) -> None:
    """An up-to-date run writes nothing, so it reads nothing of the
    destination into the cache: a later fresh build is stock's."""
    source = write_tree(tmp_path / "src", TREE)
    kept = tmp_path / "kept"
    use(settings, kept, source, MANIFEST)
    run_collectstatic(verbosity=0)  # (no cache)
    hashed = json.loads((kept / "staticfiles.json").read_bytes())["paths"]
    (kept / hashed["css/main.css"]).write_text("/* changed by hand */")
    cache = tmp_path / "cache"
    up_to_date = ours(tmp_path, "kept", cache_dir=str(cache))
    assert up_to_date == {"status": "up to date"}

    use(settings, tmp_path / "stock", source, MANIFEST)
    run_stock(verbosity=0)
    use(settings, tmp_path / "fresh", source, MANIFEST)
    fresh = ours(tmp_path, "fresh", cache_dir=str(cache))
    assert without_record(tmp_path / "fresh") == read_tree(tmp_path / "stock")
    assert fresh["mode"] == "full"


def test_a_kept_destination_of_other_settings_gets_a_complete_run(
    tmp_path: Path, settings: Any
) -> None:
    """The cache stands in for a missing record only: a destination whose
    record is of other settings is post-processed in full, as stock does."""
    tree = {**TREE, "css/abs.css": "div { background: url(/static/img/bg.png); }\n"}
    source = write_tree(tmp_path / "src", tree)
    cache, kept = tmp_path / "cache", tmp_path / "kept"
    use(settings, kept, source, MANIFEST)
    ours(tmp_path, "static", cache_dir=str(cache))  # (the cache: /static/)
    settings.STATIC_URL = "/assets/"
    ours(tmp_path, "assets", cache_dir=str(cache))
    settings.STATIC_URL = "/static/"
    back = ours(tmp_path, "back", cache_dir=str(cache))
    assert (back["mode"], back["reason"]) == ("full", "the storage's settings changed")
    stock = tmp_path / "stock"
    use(settings, stock, source, MANIFEST)
    for url in ("/static/", "/assets/", "/static/"):
        settings.STATIC_URL = url
        run_stock(verbosity=0)
    assert without_record(kept) == read_tree(stock)


def test_eviction_removes_only_what_the_cache_wrote(tmp_path: Path) -> None:
    """Foreign files, symlinks and unreadable entries neither stop eviction
    nor are removed by it."""
    from collectstatic_plus.cache import BuildCache

    cache = BuildCache(str(tmp_path / "cache"), 10, "k" * 64)
    objects = tmp_path / "cache" / "objects"
    victim = write_tree(tmp_path / "victim", {"ab" * 16: "x" * 100})
    ours = write_tree(objects, {f"ab/{'ab' * 16}": "y" * 100, ".DS_Store": "z"})
    (objects / "cd").symlink_to(victim)  # a folder elsewhere
    (objects / "ab" / ("0" * 32)).symlink_to(tmp_path / "nowhere")
    os.mkfifo(objects / "fifo")
    stale = time.time() - 7200
    write_tree(objects, {"ab/.tmp-old": "t" * 100, "ab/.tmp-new": "t" * 100})
    os.utime(objects / "ab/.tmp-old", (stale, stale))
    cache.evict()
    assert sorted(p.name for p in (ours / "ab").iterdir()) == [".tmp-new", "0" * 32]
    assert read_tree(victim) == {"ab" * 16: b"x" * 100}
    assert (objects / ".DS_Store").read_text() == "z"


def test_objects_a_build_reuses_are_marked_as_used(
    tmp_path: Path, settings: Any
) -> None:
    source, cache = first_build(tmp_path, settings)
    an_hour_ago = time.time() - 3600
    for path in (cache / "objects").rglob("*"):
        os.utime(path, (an_hour_ago, an_hour_ago))
    change(source)
    use(settings, tmp_path / "build2", source, MANIFEST)  # a fresh container
    ours(tmp_path, "second", cache_dir=str(cache))
    write_tree(source, {"img/h.svg": TREE["img/h.svg"]})  # changed back
    use(settings, tmp_path / "build3", source, MANIFEST)
    ours(tmp_path, "third", cache_dir=str(cache))  # (its objects are there)
    [state] = (cache / "states").iterdir()
    needed = set(json.loads(state.read_bytes())["outputs"].values())
    used = {
        p.name
        for p in (cache / "objects").rglob("*")
        if p.stat().st_mtime > an_hour_ago + 60
    }
    assert needed <= used


def test_an_edit_to_a_projects_own_storage_class_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record or cache entry made by other code of a project's own storage
    subclass is not reused; Django's and WhiteNoise's are keyed by version."""
    import importlib

    from collectstatic_plus.vouch import settings_key

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "own_storage.py"
    code = (
        "from whitenoise.storage import CompressedManifestStaticFilesStorage as W\n"
        "class Own(W):\n"
        "    def create_compressor(self, **kwargs):\n"
        "        return super().create_compressor(use_brotli={}, **kwargs)\n"
    )
    module.write_text(code.format(True))
    own = importlib.import_module("own_storage")
    key = settings_key(own.Own(location=str(tmp_path)))
    assert settings_key(own.Own(location=str(tmp_path))) == key
    module.write_text(code.format(False))
    own = importlib.reload(own)
    assert settings_key(own.Own(location=str(tmp_path))) != key


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (
            "django.contrib.staticfiles.storage.StaticFilesStorage",
            "the storage does not post-process",
        ),
        (
            "tests.storages.OwnHashedNameStorage",
            "OwnHashedNameStorage overrides hashed_name()",
        ),
    ],
)
def test_a_cache_that_cannot_be_used_is_said(
    tmp_path: Path, settings: Any, backend: str, why: str
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    use(settings, tmp_path / "build", source, backend)
    cache = tmp_path / "cache"
    run = run_collectstatic(verbosity=1, cache_dir=str(cache))
    assert run.stdout.startswith(f"The build cache is not used: {why}.\n")
    assert not cache.exists()


def test_a_cache_inside_the_destination_is_not_used(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    use(settings, tmp_path / "build", source, MANIFEST)
    cache = tmp_path / "build" / "cache"
    run = run_collectstatic(verbosity=1, cache_dir=str(cache))
    why = f"'{cache}' is inside the destination (it would be served)"
    assert run.stdout.startswith(f"The build cache is not used: {why}.\n")
    assert not cache.exists()


def test_a_fifo_in_the_cache_is_never_read(tmp_path: Path, settings: Any) -> None:
    """Reading a FIFO (or a device) never ends: neither an object nor a
    state that is one is opened."""
    source, cache = first_build(tmp_path, settings)
    [state] = (cache / "states").iterdir()
    document = json.loads(state.read_bytes())
    md5 = document["outputs"][document["rows"][0][4][0]]
    (cache / "objects" / md5[:2] / md5).unlink()
    os.mkfifo(cache / "objects" / md5[:2] / md5)
    use(settings, tmp_path / "build2", source, MANIFEST)
    second = ours(tmp_path, "second", cache_dir=str(cache))
    assert len(second["cache"]["damaged"]) == 1
    state.unlink()
    os.mkfifo(state)
    use(settings, tmp_path / "build3", source, MANIFEST)
    third = ours(tmp_path, "third", cache_dir=str(cache))
    assert third["reason"] == "no record of a complete post-process"


def test_states_of_other_settings_count_and_go_first(tmp_path: Path) -> None:
    """A state per settings key (a Python upgrade, an edited storage makes a
    new one): other settings' are evicted like objects; this run's is not
    counted."""
    from collectstatic_plus.cache import BuildCache

    cache = BuildCache(str(tmp_path), 150, "b" * 64)
    states = write_tree(
        tmp_path / "states", {f"{k * 64}.json": "s" * 100 for k in "ab"}
    )
    objects = write_tree(tmp_path / "objects", {f"cc/{'c' * 32}": "o" * 100})
    an_hour_ago = time.time() - 3600
    os.utime(states / f"{'a' * 64}.json", (an_hour_ago, an_hour_ago))
    cache.evict()
    assert sorted(p.name for p in states.iterdir()) == [f"{'b' * 64}.json"]
    assert (objects / "cc" / ("c" * 32)).exists()


def test_a_cache_inside_a_static_files_folder_is_not_used(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    use(settings, tmp_path / "build", source, MANIFEST)
    cache = source / "cache"
    run = run_collectstatic(verbosity=1, cache_dir=str(cache))
    why = f"'{cache}' is inside the static files folder '{source}'"
    why += " (it would be collected)"
    assert run.stdout.startswith(f"The build cache is not used: {why}.\n")
    assert not cache.exists()


def test_outputs_the_cache_puts_back_are_writes_the_report_and_check_count(
    tmp_path: Path, settings: Any
) -> None:
    source, cache = first_build(tmp_path, settings)
    build = tmp_path / "build1"
    hashed = json.loads((build / "staticfiles.json").read_bytes())["paths"].values()
    (build / RECORD).unlink()  # (as a build over stock's originals and manifest)
    for name in hashed:
        (build / name).unlink()
    restored = sorted(hashed)
    dry = ours(tmp_path, "dry", cache_dir=str(cache), dry_run=True)
    assert dry == {
        "status": "up to date",
        "cache": {"restored": len(restored)},
        "would_write": restored,
    }
    said = run_collectstatic(cache_dir=str(cache), dry_run=True, verbosity=1).stdout
    lines = [f"Would restore {name} from the build cache\n" for name in restored]
    assert said.startswith("".join(lines))
    with pytest.raises(
        CommandError, match=f": {len(restored)} change\\(s\\) would be made"
    ):
        run_collectstatic(cache_dir=str(cache), check=True, verbosity=0)
    assert ours(tmp_path, "real", cache_dir=str(cache)) == {
        "status": "up to date",
        "cache": {"restored": len(restored)},
        "written": restored,
    }
    use(settings, tmp_path / "stock", source, MANIFEST)
    run_stock(verbosity=0)
    assert without_record(build) == read_tree(tmp_path / "stock")


def test_a_cache_dir_given_as_a_path_object_is_used_and_reported(
    tmp_path: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "src", TREE)
    use(settings, tmp_path / "build1", source, MANIFEST)
    first = ours(tmp_path, "first", cache_dir=tmp_path / "cache")
    assert first["cache"]["stored"] > 0
    options = json.loads((tmp_path / "first.json").read_text())["options"]
    assert options["cache_dir"] == str(tmp_path / "cache")


def modes(root: Path) -> dict[str, str]:
    """The permission bits of everything under ``root`` but the sync record."""
    return {
        path.relative_to(root).as_posix(): oct(stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.name != RECORD
    }


@pytest.mark.parametrize(
    ("backend", "keep_only_hashed"),
    [(MANIFEST, False), (WHITENOISE, False), (WHITENOISE, True), (COMPRESSED, False)],
)
def test_outputs_restored_from_the_cache_get_the_modes_stock_gives_them(
    tmp_path: Path, settings: Any, backend: str, keep_only_hashed: bool
) -> None:
    """The storage's saves get FILE_UPLOAD_PERMISSIONS; WhiteNoise writes its
    .gz and .br with open(), so theirs follow the umask, restored or not."""
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    settings.FILE_UPLOAD_PERMISSIONS = 0o600
    umask = os.umask(0o027)
    try:
        source = write_tree(tmp_path / "src", TREE)
        cache = tmp_path / "cache"
        use(settings, tmp_path / "build1", source, backend)
        ours(tmp_path, "first", cache_dir=str(cache))
        change(source)
        use(settings, tmp_path / "stock", source, backend)
        run_stock(verbosity=0)
        use(settings, tmp_path / "build2", source, backend)  # a new, empty root
        second = ours(tmp_path, "second", cache_dir=str(cache))
    finally:
        os.umask(umask)

    assert second["cache"]["restored"] > 0
    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")
    assert modes(tmp_path / "build2") == modes(tmp_path / "stock")
    if backend != MANIFEST:  # (both kinds are there to compare)
        assert {"0o600", "0o640"} <= set(modes(tmp_path / "stock").values())


def test_an_output_whose_name_leaves_no_room_beside_it_is_restored_in_place(
    tmp_path: Path, settings: Any
) -> None:
    """A hashed name of 246-255 bytes has no room for the temporary suffix
    it is written beside its final name under: it is saved in place."""
    source = write_tree(tmp_path / "src", {"a" * 236 + ".txt": "hello " * 50})
    cache = tmp_path / "cache"
    use(settings, tmp_path / "build1", source, MANIFEST)
    ours(tmp_path, "first", cache_dir=str(cache))
    use(settings, tmp_path / "stock", source, MANIFEST)
    run_stock(verbosity=0)
    use(settings, tmp_path / "build2", source, MANIFEST)  # a new, empty root
    second = ours(tmp_path, "second", cache_dir=str(cache))
    assert second["cache"] == {"restored": 1}
    assert without_record(tmp_path / "build2") == read_tree(tmp_path / "stock")
