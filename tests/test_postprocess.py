"""Post-processing: the storage's own post_process, staged, byte-identical to stock."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management.base import CommandError

from .conftest import RECORD, read_tree, run_collectstatic, run_stock, write_tree

REPO = Path(__file__).resolve().parents[1]
TESTPROJECT = REPO / "testproject"
MANIFEST = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
WHITENOISE = "whitenoise.storage.CompressedManifestStaticFilesStorage"
COMPRESSED = "whitenoise.storage.CompressedStaticFilesStorage"
SEPARATE = "tests.storages.SeparateManifestStorage"
PLAIN = "tests.storages.RemoteLikeStorage"

CHAINS: dict[str, bytes | str] = {
    "css/main.css": (
        "@import url('base.css');\n@import 'theme/dark.css';\n"
        "body { background: url('../img/bg.png') no-repeat; }\n"
        "@font-face { src: url('../fonts/f.woff2?v=1#x') format('woff2'); }\n"
        ".d { background: url(data:image/png;base64,AAAA); }\n"
    ),
    "css/base.css": "h1 { background: url(../img/h.svg); }\n",
    "css/theme/dark.css": "p { background: url('../../img/bg.png'); }\n",
    "css/mapped.css": "a{color:red}\n/*# sourceMappingURL=mapped.css.map */\n",
    "css/mapped.css.map": '{"version": 3, "sources": ["mapped.scss"]}',
    "js/app.js": "import { x } from './lib.js';\nexport default x;\n",
    "js/lib.js": "export const x = 1;\n",
    "js/bundle.js": "var a=1;\n//# sourceMappingURL=bundle.js.map\n",
    "js/bundle.js.map": '{"version": 3, "sources": ["a.js"]}',
    "img/bg.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
    "img/h.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "fonts/f.woff2": bytes(range(256)) * 3,
}


def project_dirs() -> list[Any]:
    return [
        str(TESTPROJECT / "assets"),
        ("vendor", str(TESTPROJECT / "third_party")),
        *(str(TESTPROJECT / app / "static") for app in ("shop", "blog", "dashboard")),
    ]


def use(settings: Any, backend: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}


@pytest.fixture(params=["chains", "testproject"])
def tree(request: Any, tmp_path: Path, settings: Any) -> Path:
    if request.param == "chains":
        root = write_tree(tmp_path / "chains", CHAINS)
        settings.STATICFILES_DIRS = [str(root)]
        return root
    settings.STATICFILES_DIRS = project_dirs()
    return TESTPROJECT


def destination(root: Path) -> dict[str, bytes]:
    """STATIC_ROOT and a separate manifest folder beside it, if any."""
    found = read_tree(root)
    manifest = root.parent / "manifest"
    if manifest.exists():
        found.update({f"@manifest/{k}": v for k, v in read_tree(manifest).items()})
    return found


def reset(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(root.parent / "manifest", ignore_errors=True)


@pytest.mark.parametrize("backend", [MANIFEST, WHITENOISE, COMPRESSED, SEPARATE, PLAIN])
@pytest.mark.parametrize("parallel", [None, 4])
def test_destination_is_byte_identical_to_stock(
    tree: Path, static_root: Path, settings: Any, backend: str, parallel: Any
) -> None:
    use(settings, backend)
    static_root.mkdir()
    stock_out = run_stock(verbosity=0)
    stock = destination(static_root)
    reset(static_root)
    static_root.mkdir()
    ours = run_collectstatic(verbosity=0, parallel=parallel)
    assert destination(static_root) == stock
    assert ours.stdout == stock_out.stdout
    if backend not in (PLAIN, COMPRESSED):
        name = (
            "@manifest/staticfiles.json" if backend == SEPARATE else "staticfiles.json"
        )
        paths = json.loads(stock[name])["paths"]
        assert paths["css/main.css" if tree.name == "chains" else "robots.txt"]


def test_a_cold_run_writes_hashed_copies_of_unrewritten_files_on_the_pool(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    from .storages import SaveLogManifestStorage

    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "chains", CHAINS))]
    use(settings, "tests.storages.SaveLogManifestStorage")
    SaveLogManifestStorage.saves = []
    run_collectstatic(verbosity=0, parallel=4)

    paths = json.loads((static_root / "staticfiles.json").read_bytes())["paths"]
    copies = {
        paths[name]
        for name in CHAINS
        if not name.endswith((".css", ".js")) and paths[name] != name
    }
    assert len(copies) == 5
    # On local disk each lands under a temporary name, renamed into place.
    saves = [
        (name.removesuffix(f".{os.getpid()}.tmp"), thread, start, end)
        for name, thread, start, end in SaveLogManifestStorage.saves
    ]
    on_pool = {
        name for name, thread, _, _ in saves if thread.startswith("collectstatic")
    }
    assert copies <= on_pool
    spans = [(start, end) for name, _, start, end in saves if name in copies]
    overlapping = max(
        sum(s < end and start < e for s, e in spans) for start, end in spans
    )
    assert overlapping > 1


def test_whitenoise_compresses_each_content_once_however_many_files(
    tmp_path: Path, static_root: Path, settings: Any, monkeypatch: Any
) -> None:
    """An original and its hashed copy share one compression, also when the
    files outnumber the outputs kept for reuse (WhiteNoise hands its threads
    a set, in no useful order)."""
    from whitenoise.compress import Compressor

    from collectstatic_plus import hooks

    compressed: list[tuple[str, str]] = []
    for method in ("compress_gzip", "compress_brotli"):  # static methods
        real = getattr(Compressor, method)

        def counted(data: bytes, real: Any = real, method: str = method) -> Any:
            compressed.append((method, hashlib.md5(data).hexdigest()))
            return real(data)

        monkeypatch.setattr(Compressor, method, staticmethod(counted))
    monkeypatch.setattr(hooks, "KEPT_OUTPUTS", 8)
    files = {f"t/{i}.txt": f"file {i}\n" + "compressible text " * 40 for i in range(60)}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "many", files))]
    use(settings, WHITENOISE)
    run_stock(verbosity=0)
    stock = destination(static_root)
    assert len(compressed) == 2 * 2 * 60  # originals and hashed copies, twice
    compressed.clear()
    reset(static_root)
    run_collectstatic(verbosity=0)
    assert destination(static_root) == stock
    assert sorted(compressed) == sorted(set(compressed))
    assert len(compressed) == 2 * 60


@pytest.mark.parametrize(
    ("backend", "keep_only_hashed"),
    [
        (MANIFEST, False),
        (WHITENOISE, False),
        (WHITENOISE, True),
        (COMPRESSED, False),
        (SEPARATE, False),
    ],
)
def test_reruns_and_changes_match_stock(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    backend: str,
    keep_only_hashed: bool,
) -> None:
    source = write_tree(tmp_path / "chains", CHAINS)
    settings.STATICFILES_DIRS = [str(source)]
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    use(settings, backend)
    results = []
    for runner in (run_stock, run_collectstatic):
        reset(static_root)
        write_tree(source, CHAINS)
        runner(verbosity=0)
        runner(verbosity=0)
        (source / "css/base.css").write_text("h1 { color: blue; }\n")
        (source / "img/bg.png").write_bytes(b"\x89PNG changed")
        # Stock decides by whole seconds of mtime: make the change visible.
        later = time.time() + 10
        for name in ("css/base.css", "img/bg.png"):
            os.utime(source / name, (later, later))
        runner(verbosity=0)
        results.append(destination(static_root))
    assert results[1] == results[0]


def test_originals_copied_back_without_post_processing_are_removed_again(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    """WHITENOISE_KEEP_ONLY_HASHED_FILES: a --no-post-process run copies the
    originals back; the next run removes them, as stock's does."""
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "chains", CHAINS))]
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = True
    use(settings, WHITENOISE)
    results = []
    for runner in (run_stock, run_collectstatic):
        reset(static_root)
        runner(verbosity=0)
        runner(verbosity=0, post_process=False)
        runner(verbosity=0)
        results.append(destination(static_root))
    assert results[1] == results[0]
    assert "css/base.css" not in results[1]


#: The name a refused write is named by, per what the storage refuses.
H_SVG = hashlib.md5(str(CHAINS["img/h.svg"]).encode()).hexdigest()[:12]
REFUSED = {
    # a hashed copy, written on the pool before the manifest
    "hashed copy": (H_SVG, f"img/h.{H_SVG}.svg"),
    # css/theme/dark.css is the first file rewritten, written at once
    "rewritten": (".css.{pid}.tmp", "css/theme/dark.2240440b89cc.css"),
    "manifest": ("staticfiles.json", "staticfiles.json"),
}


@pytest.mark.parametrize("parallel", [None, 4])
@pytest.mark.parametrize("kind", REFUSED)
def test_a_post_processed_file_that_cannot_be_written_is_named_in_one_line(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    parallel: Any,
) -> None:
    refused, named = REFUSED[kind]
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "chains", CHAINS))]
    use(settings, MANIFEST)
    save = FileSystemStorage._save  # (a storage's own _save is not called so)

    def failing(self: FileSystemStorage, name: str, content: Any) -> str:
        if refused.format(pid=os.getpid()) in name:
            raise OSError(f"simulated failure writing {name}")
        return str(save(self, name, content))

    monkeypatch.setattr(FileSystemStorage, "_save", failing)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(verbosity=0, stderr=stderr, parallel=parallel)

    assert str(raised.value) == (
        f"1 post-processed file(s) could not be written: {named}. "
        "The manifest was not updated."
    )
    assert stderr.getvalue() == (
        f"Could not write '{named}': OSError: simulated failure writing "
        f"{named}.{os.getpid()}.tmp\n"
    )
    assert not (static_root / "staticfiles.json").exists()


def test_what_a_failed_post_process_left_is_not_called_foreign_when_it_is_used(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write_tree(tmp_path / "chains", CHAINS)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, "tests.storages.FailingManifestStorage")
    run_collectstatic(verbosity=0)
    (source / "css/base.css").write_text("h1 { color: blue; }\n")
    monkeypatch.setenv("FAIL_ON", "staticfiles.json")
    with pytest.raises(CommandError):  # the new hashed copies landed
        run_collectstatic(verbosity=0)
    monkeypatch.delenv("FAIL_ON")
    write_tree(static_root, {"put-by-hand.css": "x"})
    run = run_collectstatic(delete=True)
    # The copies are this run's output again: only the foreign file is said.
    assert run.stderr == (
        "1 file(s) not written by collectstatic-plus kept (first: "
        "put-by-hand.css); --delete-unowned deletes them too.\n"
    )


def test_a_dry_run_leaves_a_separate_manifest_storage_alone(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "chains", CHAINS)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, SEPARATE)
    run_collectstatic(verbosity=0)
    before = destination(static_root)
    (source / "css/base.css").write_text("h1 { color: blue; }\n")

    run_collectstatic(verbosity=0, dry_run=True)

    # Django's save_manifest deletes the old manifest before saving.
    assert destination(static_root) == before


def test_no_change_rerun_skips_post_processing(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    source = write_tree(tmp_path / "chains", CHAINS)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, MANIFEST)
    first = run_collectstatic()
    assert first.stdout.endswith(", 12 post-processed.\n")
    manifest = (static_root / "staticfiles.json").read_bytes()
    result = run_collectstatic()
    assert result.stdout == (
        "Post-processing up to date.\n"
        f"\n0 static files copied to '{static_root}', 12 unmodified.\n"
    )
    assert (static_root / "staticfiles.json").read_bytes() == manifest


CHANGES = {
    # what changed: how this run post-processes
    "source": "incremental",
    "storage option": "full",
    "static url": "full",
    "manifest deleted": "incremental",
    "hashed deleted": "incremental",
}


@pytest.mark.parametrize(("change", "mode"), CHANGES.items(), ids=CHANGES)
def test_post_processing_after_a_change_leaves_what_stock_leaves(
    tmp_path: Path, settings: Any, change: str, mode: str
) -> None:
    trees = []
    for runner in (run_stock, run_collectstatic):
        base = tmp_path / runner.__name__
        source = write_tree(base / "chains", CHAINS)
        root = base / "static_root"
        settings.STATIC_ROOT = str(root)
        settings.STATICFILES_DIRS = [str(source)]
        settings.STATIC_URL = "/static/"
        use(settings, MANIFEST)
        runner(verbosity=0)
        if change == "source":
            (source / "js/lib.js").write_text("export const x = 2;\n")
            os.utime(source / "js/lib.js", (time.time() + 10, time.time() + 10))
        elif change == "storage option":
            settings.STORAGES = {
                **settings.STORAGES,
                "staticfiles": {"BACKEND": MANIFEST, "OPTIONS": {"base_url": "/o/"}},
            }
        elif change == "static url":
            settings.STATIC_URL = "/assets/"
        elif change == "manifest deleted":
            (root / "staticfiles.json").unlink()
        else:
            hashed = json.loads((root / "staticfiles.json").read_bytes())["paths"]
            (root / hashed["css/base.css"]).unlink()
        report = base / "report.json"
        options = {"report": str(report)} if runner is run_collectstatic else {}
        runner(verbosity=0, **options)
        trees.append(read_tree(root))
    assert trees[1] == trees[0]
    assert json.loads(report.read_text())["post_processing"]["mode"] == mode


def test_storage_is_restored_after_post_processing(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    from django.contrib.staticfiles.storage import staticfiles_storage

    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "chains", CHAINS))]
    use(settings, MANIFEST)
    run_collectstatic(parallel=4)
    wrapped = staticfiles_storage._wrapped
    assert not {"exists", "open", "size", "delete", "_save"} & set(vars(wrapped))
    assert staticfiles_storage.exists("css/main.css")


def test_kill_during_post_processing_leaves_a_consistent_manifest(
    tmp_path: Path,
) -> None:
    source = write_tree(tmp_path / "chains", CHAINS)
    root = tmp_path / "root"
    (tmp_path / "pp_kill_settings.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *
            STATIC_ROOT = {str(root)!r}
            STATICFILES_DIRS = [{str(source)!r}]
            STORAGES = {{**STORAGES, "staticfiles": {{
                "BACKEND": "tests.storages.SlowManifestStorage"}}}}
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": "pp_kill_settings",
    }
    argv = [sys.executable, "-m", "django", "collectstatic", "--noinput"]
    subprocess.run(argv, env={**env, "SLOW_STORAGE_DELAY": "0"}, check=True)
    for trial in range(3):
        (source / "css/base.css").write_text(f"h1 {{ color: #{trial}{trial}0; }}\n")
        (source / "js/lib.js").write_text(f"export const x = {trial};\n")
        process = subprocess.Popen(argv, env={**env, "SLOW_STORAGE_DELAY": "0.3"})
        time.sleep(1.0 + 0.4 * trial)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        manifest = json.loads((root / "staticfiles.json").read_bytes())["paths"]
        missing = [n for n in manifest.values() if not (root / n).exists()]
        assert missing == []
    subprocess.run(argv, env={**env, "SLOW_STORAGE_DELAY": "0"}, check=True)
    manifest = json.loads((root / "staticfiles.json").read_bytes())["paths"]
    assert all((root / name).exists() for name in manifest.values())
    assert (root / manifest["css/base.css"]).read_bytes().startswith(b"h1 { color: #22")


@pytest.mark.parametrize("step", ["_save", "rename"])
def test_interrupted_local_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

    from collectstatic_plus import target as module

    root = tmp_path / "root"
    storage = ManifestStaticFilesStorage(location=str(root))
    target = module.Target(storage)
    (root / "css").mkdir(parents=True)
    (root / "css/a.123.css").write_bytes(b"old")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    if step == "rename":
        monkeypatch.setattr(module.os, "replace", interrupted)
    else:
        real_save = target._save

        def save_then_interrupt(name: str, content: Any) -> None:
            real_save(name, content)  # the temporary is on disk, then Ctrl-C
            raise KeyboardInterrupt

        target._save = save_then_interrupt
    from django.core.files.base import ContentFile

    with pytest.raises(KeyboardInterrupt):
        target.replace("css/a.123.css", ContentFile(b"new"))

    assert read_tree(root) == {"css/a.123.css": b"old"}


@pytest.mark.parametrize("parallel", [None, 4])
def test_ctrl_c_during_post_processing_says_so_and_records_what_was_copied(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    parallel: Any,
) -> None:
    from collectstatic_plus.target import Target

    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "chains", CHAINS))]
    use(settings, MANIFEST)
    real = Target.replace

    def interrupted(self: Target, name: str, content: Any) -> bool:
        if name.startswith("img/"):  # a hashed copy, on the pool
            raise KeyboardInterrupt
        return real(self, name, content)

    monkeypatch.setattr(Target, "replace", interrupted)
    with pytest.raises(CommandError) as raised:
        run_collectstatic(verbosity=0, parallel=parallel)
    assert (str(raised.value), raised.value.returncode) == (
        "Interrupted during post-processing; the previous manifest is still in "
        "place. Run collectstatic again to finish.",
        130,
    )
    record = json.loads((static_root / RECORD).read_bytes())
    assert sorted(row[0] for row in record["files"]) == sorted(CHAINS)
    assert record["processed"] == []
    assert not (static_root / "staticfiles.json").exists()


@pytest.mark.parametrize(
    "backend", [MANIFEST, WHITENOISE, "tests.storages.RawReadManifestStorage"]
)
def test_a_source_changed_during_the_run_is_never_served_under_the_old_hash(
    tmp_path: Path, static_root: Path, settings: Any, monkeypatch: Any, backend: str
) -> None:
    from collectstatic_plus.run import Run

    source = write_tree(tmp_path / "src", CHAINS)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, backend)
    post_process = Run.post_process

    def edited_first(run: Run) -> None:  # a build step writing mid-run
        with open(source / "img/h.svg", "ab") as handle:
            handle.write(b"<!-- later -->")
        post_process(run)

    monkeypatch.setattr(Run, "post_process", edited_first)
    with pytest.raises(CommandError, match=r"could not be"):
        run_collectstatic(verbosity=0)
    for name, data in read_tree(static_root).items():
        if name.startswith("img/h.") and name != "img/h.svg":
            assert name == f"img/h.{hashlib.md5(data).hexdigest()[:12]}.svg"
    monkeypatch.undo()
    run_collectstatic(verbosity=0)  # the next run mends it
    theirs = tmp_path / "stock"
    settings.STATIC_ROOT = str(theirs)
    run_stock(verbosity=0)
    assert read_tree(static_root) == read_tree(theirs)


def collect_from(
    tmp_path: Path, settings: Any, backend: str, files: dict[str, bytes | str]
) -> Path:
    """``files`` as the only static files folder, collected with ``backend``."""
    source = write_tree(tmp_path / "src", files)
    settings.STATICFILES_DIRS = [str(source)]
    use(settings, backend)
    return source


def stock_first(static_root: Path, verbosity: int = 1) -> tuple[str, dict[str, bytes]]:
    """Stock's run into an empty ``static_root``: its stdout and the tree it
    left; the root is emptied again for ours."""
    out = run_stock(verbosity=verbosity).stdout
    tree = read_tree(static_root)
    reset(static_root)
    return out, tree


def collected(root: Path) -> dict[str, bytes]:
    """What ``root`` holds, less our sync record."""
    return {k: v for k, v in read_tree(root).items() if k != RECORD}


PASSES: dict[str, bytes | str] = {
    "css/deep/a.css": "@import url('../b.css');\n",  # before b: a second pass
    "css/b.css": "p { background: url('../img/x.png'); }\n",
    "css/c.css": "@import url('deep/a.css');\n",  # after a's first pass: again
    "img/x.png": b"\x89PNG",
}


@pytest.mark.parametrize("backend", [MANIFEST, WHITENOISE])
def test_later_passes_rewrite_only_files_whose_references_changed_name(
    tmp_path: Path, static_root: Path, settings: Any, monkeypatch: Any, backend: str
) -> None:
    from django.contrib.staticfiles import storage as hashing
    from django.core.files.base import ContentFile

    collect_from(tmp_path, settings, backend, PASSES)
    rewrites: list[str] = []

    class Counted(ContentFile):  # type: ignore[type-arg]
        """Each rewritten CSS file, named by what it refers to."""

        def __init__(self, content: Any, name: str | None = None) -> None:
            refs = {b"'../b.": "a", b"'../img/x.": "b", b"'deep/a.": "c"}
            text = bytes(content).replace(b'"', b"'")
            rewrites.extend(file for ref, file in refs.items() if ref in text)
            super().__init__(content, name)

    monkeypatch.setattr(hashing, "ContentFile", Counted)
    stock_out, stock = stock_first(static_root)
    assert sorted(rewrites) == ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    rewrites.clear()

    ours = run_collectstatic(verbosity=1)

    # a twice (b got its name after a's first pass), c twice (after a's
    # second), b once; stock's third pass confirmed all three again.
    assert sorted(rewrites) == ["a", "a", "b", "c", "c"]
    assert ours.stdout == stock_out
    assert collected(static_root) == stock


def test_a_reference_to_a_name_a_later_pass_removes_ends_as_stock_ends(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    c_css = b"p{background:url(img/x.png)}\n"
    # b.css's first pass names c.css by its original hash; x.css names the
    # file that pass writes, which b.css's second pass deletes.
    b_first = f'@import url("../c.{hashlib.md5(c_css).hexdigest()[:12]}.css");\n'
    b_name = f"css/b.{hashlib.md5(b_first.encode()).hexdigest()[:12]}.css"
    files: dict[str, bytes | str] = {
        "css/b.css": "@import url('../c.css');\n",
        "c.css": c_css,
        "img/x.png": b"x",
        "x.css": f"@import url('{b_name}');\n",
    }
    collect_from(tmp_path, settings, MANIFEST, files)
    stock_out, stock = stock_first(static_root)

    ours = run_collectstatic(verbosity=1)

    assert ours.stdout == stock_out  # "4 static files copied..."
    assert collected(static_root) == stock
    # A reference to a hashed name is one to its original: nothing changed.
    again = run_collectstatic(verbosity=1)
    assert "Post-processing up to date." in again.stdout
    assert collected(static_root) == stock


def test_a_percent_encoded_reference_leaves_a_rerun_up_to_date(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    files: dict[str, bytes | str] = {  # a file named "a%20b.png", quoted again
        "css/a.css": "p{background:url(../img/x/a%2520b.png)}\n",
        "img/x/a%20b.png": b"png",
    }
    collect_from(tmp_path, settings, MANIFEST, files)
    stock_out, stock = stock_first(static_root)

    assert run_collectstatic(verbosity=1).stdout == stock_out
    again = run_collectstatic(verbosity=1)

    assert "Post-processing up to date." in again.stdout
    assert collected(static_root) == stock


def test_a_file_whose_hash_key_another_path_took_is_never_skipped_unread(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    files: dict[str, bytes | str] = {  # clean_name turns "\\" into "/": one key
        "css/a/b.css": "p{background:url('../../img/x.png')}\n",
        "css/a\\b.css": "p{background:url('../img/y.png')}\n",
        "css/c.css": "@import url('a/b.css');\n",
        "img/x.png": b"x",
        "img/y.png": b"y",
    }
    collect_from(tmp_path, settings, MANIFEST, files)
    failed = (CommandError, RuntimeError)  # (Django < 6.1 raises the error itself)
    with pytest.raises(failed, match="Max post-process passes exceeded"):
        run_stock(verbosity=0)
    reset(static_root)

    with pytest.raises(failed):
        run_collectstatic(verbosity=0)
    assert not (static_root / "staticfiles.json").exists()


@pytest.mark.parametrize("backend", [MANIFEST, WHITENOISE])
def test_a_reference_to_a_folder_is_left_as_stock_leaves_it(
    tmp_path: Path, static_root: Path, settings: Any, backend: str
) -> None:
    files: dict[str, bytes | str] = {
        "css/a.css": "p{background:url('../img')}\n",
        "img/x.png": b"x",
    }
    collect_from(tmp_path, settings, backend, files)
    stock_out, stock = stock_first(static_root)

    ours = run_collectstatic(verbosity=1)

    assert ours.stdout == stock_out
    assert collected(static_root) == stock
    hashed = json.loads(stock["staticfiles.json"])["paths"]["css/a.css"]
    assert stock[hashed] == b'p{background:url("../img")}\n'


@pytest.mark.parametrize("backend", [MANIFEST, WHITENOISE, COMPRESSED])
def test_outputs_a_stock_run_changed_are_made_again_when_ours_copies_back(
    tmp_path: Path, static_root: Path, settings: Any, backend: str
) -> None:
    files: dict[str, bytes | str] = {
        "css/a.css": "@import url('b.css');\n",
        "css/b.css": "p{color:red}" * 40,
    }
    source = collect_from(tmp_path, settings, backend, files)
    later = time.time()

    def edit(text: str) -> None:
        nonlocal later
        later += 10  # stock copies by mtime
        (source / "css/b.css").write_text(text)
        os.utime(source / "css/b.css", (later, later))

    def three_runs(runner: Any) -> dict[str, bytes]:
        runner(verbosity=0)
        edit("p{color:blue}" * 40)
        run_stock(verbosity=0)  # stock writes over what the first run wrote
        edit("p{color:red}" * 40)  # as the first run saw it
        runner(verbosity=0)  # ours copies b.css back: its outputs are stock's
        return collected(static_root)

    stock = three_runs(run_stock)
    reset(static_root)

    assert three_runs(run_collectstatic) == stock


def test_a_storage_whose_save_acts_on_the_name_writes_what_stock_writes(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    files: dict[str, bytes | str] = {
        "css/a.css": "p{background:url(../img/x.png)}\n",
        "img/x.png": b"png",
    }
    source = collect_from(
        tmp_path, settings, "tests.storages.BannerManifestStorage", files
    )
    stock_out, stock = stock_first(static_root)

    assert run_collectstatic(verbosity=1).stdout == stock_out
    assert collected(static_root) == stock
    assert sum(v.startswith(b"/* (c) */\n") for v in stock.values()) == 2
    (source / "img/x.png").write_bytes(b"png2")  # a.css's incremental turn
    run_collectstatic()
    after = collected(static_root)
    css = [name for name in after if name.startswith("css/a.") and name not in stock]
    assert len(css) == 1 and after[css[0]].startswith(b"/* (c) */\n")


def test_a_dry_run_names_what_compressed_static_files_storage_would_write(
    tmp_path: Path, static_root: Path, settings: Any
) -> None:
    files: dict[str, bytes | str] = {
        "css/a.css": "a { color: red }\n" * 50,
        "img/x.png": b"\x89PNG" + bytes(200),  # (not compressed: an image)
        "notes.txt": "notes " * 100,
    }
    source = collect_from(tmp_path, settings, COMPRESSED, files)
    report = tmp_path / "report.json"
    for change in ("cold", "notes.txt"):
        if change != "cold":
            (source / change).write_text("other notes " * 100)
        run_collectstatic(dry_run=True, report=str(report))
        planned = json.loads(report.read_text())["post_processing"]
        before = collected(static_root)
        run_collectstatic(report=str(report))
        done = json.loads(report.read_text())["post_processing"]
        after = collected(static_root)
        new = sorted(name for name in after if after[name] != before.get(name))
        variants = [name for name in new if name.endswith((".gz", ".br"))]

        assert planned["status"] == "simulated", planned
        assert planned["would_write"] == done["written"] == variants
        assert len(variants) == (4 if change == "cold" else 2)


@pytest.mark.parametrize("backend", [WHITENOISE, COMPRESSED])
def test_check_verify_finds_compressed_variants_edited_by_hand(
    tmp_path: Path, static_root: Path, settings: Any, backend: str
) -> None:
    """--verify trusts no record: its run compresses every file again, over
    a .gz or .br holding other bytes under its name (gzip without a
    timestamp and Brotli depend on the input alone), so its dry run and
    --check name those. Without --verify the record is trusted."""
    files = {"css/a.css": "a { color: red }\n" * 50, "notes.txt": "notes " * 100}
    collect_from(tmp_path, settings, backend, files)
    _out, stock = stock_first(static_root)
    run_collectstatic()
    assert collected(static_root) == stock
    hashed: dict[str, str] = {}
    if backend == WHITENOISE:
        hashed = json.loads(stock["staticfiles.json"])["paths"]
    css = hashed.get("css/a.css", "css/a.css")  # a hashed copy, or the original
    source = {
        f"{name}.{ext}": unhashed
        for unhashed, name in (("css/a.css", css), ("notes.txt", "notes.txt"))
        for ext in ("br", "gz")
    }
    edited = sorted(source)
    for name in edited:
        (static_root / name).write_bytes(b"edited by hand")
    before = read_tree(static_root)
    run_collectstatic(check=True)  # (the record says they are as written)

    said, report = io.StringIO(), tmp_path / "check.json"
    with pytest.raises(CommandError) as raised:
        run_collectstatic(
            check=True, verify=True, verbosity=1, stdout=said, report=str(report)
        )
    assert (str(raised.value), raised.value.returncode) == (
        "The destination is not up to date: 4 change(s) would be made.",
        1,
    )
    dry = run_collectstatic(dry_run=True, verify=True, verbosity=1)
    assert read_tree(static_root) == before
    planned = json.loads(report.read_text())["post_processing"]
    assert planned["would_write"] == edited
    lines = [f"Would post-process {source[name]} -> {name}" for name in edited]
    for printed in (said.getvalue(), dry.stdout):
        assert [
            line for line in printed.splitlines() if line.startswith("Would")
        ] == lines

    run_collectstatic(verify=True)
    assert collected(static_root) == stock
    run_collectstatic(check=True, verify=True)


def test_a_name_with_a_backslash_is_post_processed_as_stock_does(
    tmp_path: Path, settings: Any
) -> None:
    """FileSystemStorage._save gives 'a\\b' back as 'a/b' (for Windows): the
    hashed copy written beside its name was looked for there, and failed."""
    files = {"css/a\\b.css": "a { background: url(../ok.txt) }", "ok.txt": "ok"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    settings.STATIC_ROOT = str(tmp_path / "stock")
    run_stock()
    settings.STATIC_ROOT = str(tmp_path / "ours")
    run_collectstatic()
    ours = read_tree(tmp_path / "ours")
    assert ours == read_tree(tmp_path / "stock")
    assert not [name for name in ours if name.endswith(".tmp")]


def test_what_post_processing_deletes_is_in_the_dry_run_the_report_and_check(
    tmp_path: Path, settings: Any, static_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stock deletes an intermediate hashed copy it no longer keeps."""
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

    files = {"css/a.css": "a { background: url(b.css) }", "css/b.css": "b {}"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    monkeypatch.setattr(ManifestStaticFilesStorage, "keep_intermediate_files", True)
    run_collectstatic()
    before = set(read_tree(static_root))
    monkeypatch.setattr(ManifestStaticFilesStorage, "keep_intermediate_files", False)
    settings.STORAGES = {**settings.STORAGES}  # (a storage built anew)

    report = tmp_path / "dry.json"
    dry = run_collectstatic(dry_run=True, report=str(report))
    planned = json.loads(report.read_text())["post_processing"]["would_delete"]
    with pytest.raises(CommandError):
        run_collectstatic(check=True)
    run_collectstatic(report=str(report))
    deleted = json.loads(report.read_text())["post_processing"]["deleted"]
    gone = sorted(before - set(read_tree(static_root)))
    assert planned == deleted == gone != []
    assert all(f"Would delete {name}\n" in dry.stdout for name in gone)


@pytest.mark.parametrize("by_option", [True, False], ids=["option", "setting"])
def test_after_the_storage_options_change_its_saves_are_written_as_stock_writes_them(
    tmp_path: Path, settings: Any, by_option: bool
) -> None:
    """Stock saves rewritten CSS and the manifest again each run: after an
    option changes (here the files' mode) they have the new one, the hashed
    copies it finds there keep theirs."""
    files = {"css/a.css": "a { background: url(b.png) }", "css/b.png": "png"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]

    def modes(root: Path) -> dict[str, int]:
        return {
            str(path.relative_to(root)): path.stat().st_mode & 0o777
            for path in root.rglob("*")
            if path.is_file() and path.name != RECORD
        }

    for name, run in (("stock", run_stock), ("ours", run_collectstatic)):
        settings.STATIC_ROOT = str(tmp_path / name)
        for mode in (0o644, 0o600):
            options = {"file_permissions_mode": mode} if by_option else {}
            settings.FILE_UPLOAD_PERMISSIONS = None if by_option else mode
            storage = {"BACKEND": MANIFEST, "OPTIONS": options}
            settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}
            run(verbosity=0)
    assert modes(tmp_path / "ours") == modes(tmp_path / "stock")
    assert 0o600 in modes(tmp_path / "stock").values()
    assert read_tree(tmp_path / "ours") == read_tree(tmp_path / "stock")


def test_a_hashed_name_near_the_file_name_limit_is_written_as_stock_writes_it(
    tmp_path: Path, settings: Any
) -> None:
    """No room for a temporary suffix beside it: written in place."""
    name = "css/" + "l" * 236 + ".css"  # its hashed name: 253 bytes
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", {name: "a{}"}))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    settings.STATIC_ROOT = str(tmp_path / "stock")
    run_stock()
    settings.STATIC_ROOT = str(tmp_path / "ours")
    run_collectstatic()
    assert read_tree(tmp_path / "ours") == read_tree(tmp_path / "stock")


def test_after_an_upgrade_check_passes_where_nothing_would_be_written(
    tmp_path: Path, settings: Any, static_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Django version: a complete post-process, whose saves find
    their bytes there (only changed settings write them again)."""
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", CHAINS))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    run_collectstatic()
    monkeypatch.setattr("django.get_version", lambda: "99.0")
    run_collectstatic(check=True)


def test_an_intermediate_this_run_wrote_and_deleted_is_no_deletion_in_its_report(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    files = {
        "css/a.css": "@import url('b.css');",
        "css/b.css": "p{background:url('../i/y.png')}",
        "i/y.png": "y",
    }
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    report = tmp_path / "report.json"
    run_collectstatic(report=str(report))
    assert "deleted" not in json.loads(report.read_text())["post_processing"]


def test_a_dry_run_asks_a_storage_that_cannot_list_once_per_name_it_would_delete(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    """An intermediate hashed copy left in a destination that cannot be
    listed: the dry run names it as a deletion (once per run, not once per
    line that says so)."""
    from .storages import CountingRemoteLikeStorage

    files = {"css/a.css": "a { background: url(b.css) }", "css/b.css": "b {}"}
    settings.STATICFILES_DIRS = [str(write_tree(tmp_path / "src", files))]
    use(settings, "tests.storages.RemoteLikeManifestStorage")
    run_collectstatic(verbosity=0)
    digest = hashlib.md5(files["css/a.css"].encode()).hexdigest()[:12]
    intermediate = f"css/a.{digest}.css"
    (static_root / intermediate).write_text(files["css/a.css"])

    CountingRemoteLikeStorage.asked = {}
    report = tmp_path / "dry.json"
    dry = run_collectstatic(dry_run=True, report=str(report))
    planned = json.loads(report.read_text())["post_processing"]["would_delete"]
    assert planned == [intermediate]
    assert f"Would delete {intermediate}\n" in dry.stdout
    assert CountingRemoteLikeStorage.asked[intermediate] == 1

    CountingRemoteLikeStorage.asked = {}
    run_collectstatic(report=str(report))
    deleted = json.loads(report.read_text())["post_processing"]["deleted"]
    assert deleted == [intermediate]
    assert not (static_root / intermediate).exists()
    assert CountingRemoteLikeStorage.asked[intermediate] == 1
