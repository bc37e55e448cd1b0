"""Incremental post-processing leaves what stock's complete run leaves.

Two copies of a source tree, two destinations: every change is made to both,
then stock's collectstatic runs on one and ours on the other, and the two
destinations must be equal byte for byte: originals, hashed copies, the
manifest (its key order and ``hash`` included), compressed variants. Stock
post-processes everything on every run; ours only what the change reaches,
which the report says (``post_processing.mode`` and ``files``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from .conftest import RECORD, run_collectstatic, run_stock, write_tree
from .destinations import Destination, S3Destination

MANIFEST = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
WHITENOISE = "whitenoise.storage.CompressedManifestStaticFilesStorage"
COMPRESSED = "whitenoise.storage.CompressedStaticFilesStorage"
JS_MODULES = "tests.storages.JSModuleManifestStorage"

TREE: dict[str, bytes | str] = {
    "css/main.css": (
        "@import url('base.css');\n@import 'theme/dark.css';\n"
        "body { background: url('../img/bg.png') no-repeat; }\n"
    ),
    "css/base.css": "h1 { background: url(../img/h.svg); }\n",
    "css/theme/dark.css": "p { background: url('../../img/bg.png'); }\n",
    "css/plain.css": "q { color: red }\n",
    "css/mapped.css": "a{color:red}\n/*# sourceMappingURL=mapped.css.map */\n",
    "css/mapped.css.map": '{"version": 3, "sources": ["mapped.scss"]}',
    "js/app.js": "import { x } from './lib.js';\nexport default x;\n",
    "js/lib.js": "export const x = 1;\n",
    "js/bundle.js": "var a=1;\n//# sourceMappingURL=bundle.js.map\n",
    "js/bundle.js.map": '{"version": 3, "sources": ["a.js"]}',
    "img/bg.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
    "img/h.svg": "<svg xmlns='http://www.w3.org/2000/svg'>" + " " * 400 + "</svg>",
    "img/unused.png": b"\x89PNG unused",
    "text/notes.txt": "notes " * 100,
}


class Twin:
    """A source tree and a destination for stock, the same for ours."""

    def __init__(
        self,
        root: Path,
        make: Callable[[str], Destination],
        tree: dict[str, bytes | str] = TREE,
    ) -> None:
        self.sources = {side: root / side / "src" for side in ("stock", "ours")}
        for source in self.sources.values():
            write_tree(source, tree)
        self.destinations = {side: make(side) for side in ("stock", "ours")}
        self.stamp = time.time() + 10
        #: What ours wrote in its last run, and the error both last raised.
        self.written: list[str] = []
        self.error: str | None = None

    def change(self, edit: Callable[[Path], None]) -> None:
        """Make the same change to both trees, with a later mtime than any
        before (stock decides by whole seconds of mtime)."""
        self.stamp += 2
        for source in self.sources.values():
            edit(source)
            for path in source.rglob("*"):
                if path.is_file() and path.stat().st_mtime > self.stamp - 60:
                    os.utime(path, (self.stamp, self.stamp))

    def run(self, settings: Any, backend: str, **extra: Any) -> dict[str, Any]:
        """Stock, then ours; both destinations must be equal. Ours's report."""
        errors = {}
        for side, runner in (("stock", run_stock), ("ours", run_collectstatic)):
            self.use(side, settings, backend, **extra)
            report = self.sources[side].parent / "report.json"
            options = {"report": str(report)} if side == "ours" else {}
            self.destinations[side].start()
            try:
                runner(verbosity=0, **options)
            except (CommandError, ValueError, RuntimeError) as error:
                errors[side] = re.sub(r"0x[0-9a-f]+", "0x...", str(error))  # reprs
        self.written = self.destinations["ours"].written()
        self.error = errors.get("ours")
        assert errors.get("ours") == errors.get("stock")
        if self.error is None:
            assert self.contents("ours") == self.contents("stock")
        else:  # stock leaves what it wrote before failing; the manifests agree
            manifests = [self.contents(side).get("staticfiles.json") for side in errors]
            assert manifests[0] == manifests[1]
        report = self.sources["ours"].parent / "report.json"
        document: dict[str, Any] = json.loads(report.read_text())
        return document["post_processing"]

    def dry_run(
        self, settings: Any, backend: str, **extra: Any
    ) -> tuple[list[str], dict[str, Any]]:
        """Ours with --dry-run, which must write nothing: the lines it
        printed about post-processing, and its report's."""
        self.use("ours", settings, backend, **extra)
        report = self.sources["ours"].parent / "dry-run.json"
        self.destinations["ours"].start()
        printed = run_collectstatic(verbosity=1, dry_run=True, report=str(report))
        assert self.destinations["ours"].written() == []
        lines = printed.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("post-"))
        end = next(i for i, line in enumerate(lines) if not line) if "" in lines else 0
        document: dict[str, Any] = json.loads(report.read_text())
        return lines[start : end or None], document["post_processing"]

    def use(self, side: str, settings: Any, backend: str, **extra: Any) -> None:
        settings.STATICFILES_DIRS = [str(self.sources[side])]
        self.destinations[side].use(settings, backend, **extra)
        from django.contrib.staticfiles.storage import staticfiles_storage
        from django.utils.functional import empty

        staticfiles_storage._wrapped = empty

    def contents(self, side: str) -> dict[str, bytes]:
        found = self.destinations[side].contents()
        return {k: v for k, v in found.items() if not k.endswith(RECORD)}


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.s3),
    ]
)
def twin(request: pytest.FixtureRequest, tmp_path: Path) -> Twin:
    from .destinations import LocalDestination

    if request.param == "local":
        return Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    server = request.getfixturevalue("s3_server")
    return Twin(tmp_path, lambda side: S3Destination(server))


S3_MANIFEST = "storages.backends.s3.S3ManifestStaticStorage"
#: The storage each comparison runs on: its destination, its class, and
#: whether WhiteNoise keeps only hashed files.
STORAGES = {
    "local manifest": ("local", MANIFEST, False),
    "whitenoise": ("local", WHITENOISE, False),
    "whitenoise keeping only hashed files": ("local", WHITENOISE, True),
    "s3 manifest": ("s3", S3_MANIFEST, False),
}
#: Each of those, rewriting JS module imports too.
JS_MODULES_OF = {
    MANIFEST: JS_MODULES,
    WHITENOISE: "tests.storages.JSModuleWhiteNoiseStorage",
    S3_MANIFEST: "tests.storages.JSModuleS3ManifestStorage",
}


@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=[pytest.mark.s3] if kind == "s3" else [])
        for name, (kind, _backend, _keep) in STORAGES.items()
    ]
)
def compared(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Any
) -> tuple[Twin, str]:
    """A twin on each storage the comparisons run on, and that storage."""
    from .destinations import LocalDestination

    kind, backend, keep_only_hashed = STORAGES[request.param]
    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    if kind == "local":
        return Twin(
            tmp_path, lambda side: LocalDestination(tmp_path / side / "root")
        ), backend
    server = request.getfixturevalue("s3_server")
    return Twin(tmp_path, lambda side: S3Destination(server)), backend


def storage_for(twin: Twin, backend: str) -> str:
    """The storage to test: on S3 its manifest storage, locally ``backend``."""
    if isinstance(twin.destinations["ours"], S3Destination):
        return "storages.backends.s3.S3ManifestStaticStorage"
    return backend


def edit(name: str, text: str) -> Callable[[Path], None]:
    def change(source: Path) -> None:
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)

    return change


def remove(name: str) -> Callable[[Path], None]:
    return lambda source: (source / name).unlink()


def rename(old: str, new: str, referrer: str) -> Callable[[Path], None]:
    def change(source: Path) -> None:
        (source / old).rename(source / new)
        path = source / referrer
        path.write_text(
            path.read_text().replace(old.split("/")[-1], new.split("/")[-1])
        )

    return change


#: Each change, what this run post-processes (besides the manifest) and why.
CHANGES: dict[str, tuple[Callable[[Path], None], dict[str, str]]] = {
    "an image referenced by CSS": (
        edit("img/bg.png", "\x89PNG changed"),
        {
            "css/main.css": "references img/bg.png",
            "css/theme/dark.css": "references img/bg.png",
            "img/bg.png": "changed",
        },
    ),
    "an image referenced through an @import": (
        edit("img/h.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>" + " " * 300),
        {
            "css/main.css": "references css/base.css",
            "css/base.css": "references img/h.svg",
            "img/h.svg": "changed",
        },
    ),
    "a CSS file imported by another": (
        edit("css/base.css", "h1 { background: url(../img/h.svg); color: red }\n"),
        {"css/main.css": "references css/base.css", "css/base.css": "changed"},
    ),
    "a source map": (
        edit("js/bundle.js.map", '{"version": 3, "sources": ["b.js"]}'),
        {"js/bundle.js": "references js/bundle.js.map", "js/bundle.js.map": "changed"},
    ),
    "a file that names a source map": (
        edit(
            "css/mapped.css", "a{color:blue}\n/*# sourceMappingURL=mapped.css.map */\n"
        ),
        {"css/mapped.css": "changed"},
    ),
    "a file added": (
        edit("css/added.css", "b { background: url(../img/h.svg) }\n"),
        {"css/added.css": "new"},
    ),
    "an unreferenced file removed": (remove("img/unused.png"), {}),
    "a file renamed": (
        rename("img/h.svg", "img/h2.svg", "css/base.css"),
        {
            "css/base.css": "changed",
            "css/main.css": "references css/base.css",
            "img/h2.svg": "new",
        },
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_after_a_change_the_destination_is_what_a_complete_run_leaves(
    twin: Twin, settings: Any, change: str
) -> None:
    backend = storage_for(twin, MANIFEST)
    assert twin.run(settings, backend)["mode"] == "full"
    assert twin.run(settings, backend) == {"status": "up to date"}
    edit_, files = CHANGES[change]
    twin.change(edit_)
    printed, planned = twin.dry_run(settings, backend)
    assert (planned["mode"], planned["files"]) == ("incremental", files)
    assert printed[: len(files) + 1] == [
        f"post-processing: incremental, {len(files)} file(s) would be processed",
        *(f"  {name}: {why}" for name, why in planned["files"].items()),
    ]
    done = twin.run(settings, backend)
    assert (done["mode"], done["files"]) == ("incremental", files)
    assert done["written"] == planned["would_write"]
    assert twin.run(settings, backend) == {"status": "up to date"}


def test_a_manifest_another_run_published_is_written_again(
    compared: tuple[Twin, str], settings: Any
) -> None:
    """Stock, run over the same destination without css/plain.css, publishes
    a manifest that does not name it; with every file still there, ours
    writes the complete manifest again instead of finding it up to date."""
    twin, backend = compared
    republished(twin, storage_for(twin, backend), settings)


@pytest.mark.s3
def test_a_multipart_manifest_another_run_published_is_written_again(
    s3_server: Any, tmp_path: Path, settings: Any
) -> None:
    """Its ETag is no MD5: the one its upload answered with tells."""
    from boto3.s3.transfer import TransferConfig

    twin = Twin(tmp_path, lambda side: S3Destination(s3_server))
    multipart = TransferConfig(multipart_threshold=256)
    republished(twin, S3_MANIFEST, settings, transfer_config=multipart)
    destination = twin.destinations["ours"]
    assert isinstance(destination, S3Destination)
    assert destination.bucket.etags()["staticfiles.json"].endswith("-1")


def republished(twin: Twin, backend: str, settings: Any, **extra: Any) -> None:
    """A complete run; stock without css/plain.css; ours writes the manifest."""
    assert twin.run(settings, backend, **extra)["mode"] == "full"
    plain = twin.sources["ours"] / "css/plain.css"
    text, stamp = plain.read_text(), plain.stat().st_mtime
    plain.unlink()
    twin.use("ours", settings, backend, **extra)
    run_stock(verbosity=0)
    plain.write_text(text)
    os.utime(plain, (stamp, stamp))
    published = json.loads(twin.contents("ours")["staticfiles.json"])
    assert "css/plain.css" not in published["paths"]
    printed, planned = twin.dry_run(settings, backend, **extra)
    why = "staticfiles.json is not the one the last run wrote"
    assert (planned["mode"], planned["files"], planned["reason"]) == (
        "incremental",
        {},
        why,
    )
    assert printed[0] == (
        "post-processing: incremental, 0 file(s) would be processed; "
        f"the manifest would be written again: {why}"
    )
    assert planned["manifest_changes"] is True
    done = twin.run(settings, backend, **extra)  # (equal to stock's, file for file)
    assert (done["mode"], done["files"], done["written"]) == ("incremental", {}, [])
    assert twin.run(settings, backend, **extra) == {"status": "up to date"}


@pytest.mark.parametrize(
    ("listed", "moved"),
    [
        ("9b2cf535f27731c974343645a3985328-2", False),  # as its upload answered
        ("0123456789abcdef0123456789abcdef-3", True),  # another object since
        (None, False),  # a listing that gives no ETag cannot tell
    ],
)
def test_a_manifest_is_known_by_the_etag_its_upload_answered_with(
    listed: str | None, moved: bool
) -> None:
    """An ETag that is no MD5 (a multipart upload, SSE-KMS) is compared as
    the upload answered, not taken for another manifest on every run."""
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

    from collectstatic_plus.backends.base import Remote
    from collectstatic_plus.incremental import manifest_moved
    from collectstatic_plus.record import Record

    class Remote_:
        local = False

    previous = Record("f", state={"manifest": "9b2cf535f27731c974343645a3985328-2"})
    listing = {"staticfiles.json": Remote(10, listed)}
    storage = ManifestStaticFilesStorage(location="/nowhere")
    why = manifest_moved(storage, listing, previous, Remote_())  # type: ignore[arg-type]
    assert why == (
        "staticfiles.json is not the one the last run wrote" if moved else ""
    )


def test_an_intermediate_copy_written_then_deleted_is_not_reported_written(
    tmp_path: Path, settings: Any
) -> None:
    from .destinations import LocalDestination

    tree: dict[str, bytes | str] = {
        "css/ref.css": "a { background: url(img.png) }\n",
        "sub/x.css": "@import url('../css/ref.css');\n",
        "css/img.png": "v1",
    }
    make = lambda side: LocalDestination(tmp_path / side / "root")  # noqa: E731
    twin = Twin(tmp_path, make, tree)
    twin.run(settings, MANIFEST)
    twin.change(edit("css/img.png", "v2"))
    _, planned = twin.dry_run(settings, MANIFEST)
    done = twin.run(settings, MANIFEST)  # (a later pass gave sub/x.css another name)
    assert done["written"] == planned["would_write"]
    assert len(done["written"]) == 3  # img.png's, ref.css's and x.css's copies


@pytest.mark.parametrize("keep_only_hashed", [False, True])
@pytest.mark.parametrize("change", CHANGES)
def test_whitenoise_compresses_only_what_is_new_and_leaves_what_stock_leaves(
    tmp_path: Path, settings: Any, change: str, keep_only_hashed: bool
) -> None:
    from .destinations import LocalDestination

    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    assert twin.run(settings, WHITENOISE)["mode"] == "full"
    names = set(twin.contents("ours"))
    assert any(name.endswith(".br") for name in names)  # Brotli is installed
    assert (tmp_path / "ours/root/img/bg.png").exists() is not keep_only_hashed
    edit_, files = CHANGES[change]
    twin.change(edit_)
    done = twin.run(settings, WHITENOISE)
    assert (done["mode"], done["files"]) == ("incremental", files)
    # What was written: the changed originals, and only the outputs of the
    # files post-processed again (hashed copies and their .gz and .br).
    stems = {name.rsplit(".", 1)[0] for name in files}
    extra = {"staticfiles.json", RECORD}
    assert {
        name for name in twin.written if name.split(".")[0] not in stems
    } <= extra, twin.written
    # The report names the compressed files too, as a dry run's does.
    compressed = {name for name in twin.written if name.endswith((".gz", ".br"))}
    assert compressed <= set(done["written"])
    assert twin.run(settings, WHITENOISE) == {"status": "up to date"}


def test_whitenoise_leaves_the_variants_of_an_unchanged_original_as_they_are(
    tmp_path: Path, settings: Any
) -> None:
    """css/main.css is post-processed again (it imports css/base.css, which
    changed) but is itself unchanged: its .gz and .br, and those of the
    hashed copies already there, are left as they are (not written again,
    as the dry run says), kept as outputs (--delete spares them), and one
    that is missing is made again."""
    from .destinations import LocalDestination

    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = False
    tree: dict[str, bytes | str] = {
        "css/main.css": "@import url('base.css');\n" + "p { color: red }\n" * 20,
        "css/base.css": "h1 { color: blue }\n" * 20,
    }
    make = lambda side: LocalDestination(tmp_path / side / "root")  # noqa: E731
    twin = Twin(tmp_path, make, tree)
    twin.run(settings, WHITENOISE)
    root = tmp_path / "ours/root"
    variants = ["css/main.css.gz", "css/main.css.br"]
    before = {name: (root / name).stat() for name in variants}
    twin.change(edit("css/base.css", "h1 { color: green }\n" * 20))
    _, planned = twin.dry_run(settings, WHITENOISE)
    done = twin.run(settings, WHITENOISE)
    for name, stat in before.items():  # (WhiteNoise sets the mtime it had)
        now = (root / name).stat()
        assert (now.st_ino, now.st_ctime_ns) == (stat.st_ino, stat.st_ctime_ns)
    assert done["written"] == planned["would_write"]
    assert not set(variants) & set(done["written"])
    twin.use("ours", settings, WHITENOISE)
    run_collectstatic(verbosity=0, delete=True)
    assert twin.contents("ours") == twin.contents("stock")
    (root / "css/main.css.br").unlink()
    twin.change(edit("css/base.css", "h1 { color: gray }\n" * 20))
    done = twin.run(settings, WHITENOISE)  # (equal to stock's, .br included)
    assert set(variants) <= set(done["written"])  # (compressed as stock does)
    assert "css/main.css.br" in twin.written


def test_compressed_storage_compresses_only_changed_files(
    tmp_path: Path, settings: Any
) -> None:
    from .destinations import LocalDestination

    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    assert twin.run(settings, COMPRESSED)["mode"] == "full"
    twin.change(edit("text/notes.txt", "other notes " * 100))
    done = twin.run(settings, COMPRESSED)
    assert (done["mode"], done["files"]) == (
        "incremental",
        {"text/notes.txt": "changed"},
    )
    assert twin.written == [
        RECORD,
        "text/notes.txt",
        "text/notes.txt.br",
        "text/notes.txt.gz",
    ]


def test_js_modules_with_import_aggregation_are_followed(
    compared: tuple[Twin, str], settings: Any
) -> None:
    twin, backend = compared
    backend = JS_MODULES_OF[backend]
    assert twin.run(settings, backend)["mode"] == "full"
    twin.change(edit("js/lib.js", "export const x = 2;\n"))
    done = twin.run(settings, backend)
    assert (done["mode"], done["files"]) == (
        "incremental",
        {"js/app.js": "references js/lib.js", "js/lib.js": "changed"},
    )
    assert twin.run(settings, backend) == {"status": "up to date"}


@pytest.mark.parametrize("what", ["static url", "storage option", "whitenoise setting"])
def test_changed_settings_mean_a_complete_run(
    compared: tuple[Twin, str], settings: Any, what: str
) -> None:
    twin, backend = compared
    if what == "whitenoise setting" and backend != WHITENOISE:
        pytest.skip("only WhiteNoise's storages read it (see the test below)")
    assert twin.run(settings, backend)["mode"] == "full"
    extra: dict[str, Any] = {}
    if what == "static url":
        settings.STATIC_URL = "/assets/"
    elif what == "whitenoise setting":
        settings.WHITENOISE_SKIP_COMPRESS_EXTENSIONS = ["txt", "png"]
    elif backend == S3_MANIFEST:
        extra = {"querystring_expire": 60}
    else:
        extra = {"base_url": "/other/"}
    _, planned = twin.dry_run(settings, backend, **extra)
    done = twin.run(settings, backend, **extra)
    assert (done["mode"], done["reason"]) == ("full", "the storage's settings changed")
    # What the dry run said would be written is what was (.gz/.br included).
    assert planned["would_write"] == done["written"]
    assert twin.run(settings, backend, **extra) == {"status": "up to date"}


@pytest.mark.parametrize("what", ["whitenoise setting", "file mode"])
def test_a_setting_the_storage_never_reads_changes_nothing(
    twin: Twin, settings: Any, what: str
) -> None:
    backend = storage_for(twin, MANIFEST)
    assert twin.run(settings, backend)["mode"] == "full"
    if what == "whitenoise setting":  # (read by WhiteNoise's storages only)
        settings.WHITENOISE_SKIP_COMPRESS_EXTENSIONS = ["txt", "png"]
    else:  # (read by FileSystemStorage's saves only)
        settings.FILE_UPLOAD_PERMISSIONS = 0o600
    done = twin.run(settings, backend)
    if what == "file mode" and backend == MANIFEST:
        assert (done["mode"], done["reason"]) == (
            "full",
            "the storage's settings changed",
        )
    else:
        assert done == {"status": "up to date"}


#: What the package cannot vouch for, and the reason the report gives.
UNVOUCHED = {
    "a storage of another kind": (
        "tests.storages.CheckingStorage",
        "CheckingStorage is not a manifest storage we know",
    ),
    "an own file_hash": (
        "tests.storages.OwnFileHashStorage",
        "OwnFileHashStorage overrides file_hash()",
    ),
    "an own hashed_name": (
        "tests.storages.OwnHashedNameStorage",
        "OwnHashedNameStorage overrides hashed_name()",
    ),
    "an own url_converter": (
        "tests.storages.OwnURLConverterStorage",
        "OwnURLConverterStorage overrides url_converter()",
    ),
    "an own post_process": (
        "tests.storages.OwnPostProcessStorage",
        "OwnPostProcessStorage overrides post_process()",
    ),
    "no sync record": (MANIFEST, "no record of a complete post-process"),
    "an unreadable sync record": (MANIFEST, "no record of a complete post-process"),
    "another Django version": (MANIFEST, "the storage's code or versions changed"),
}


@pytest.mark.parametrize("what", UNVOUCHED)
def test_what_cannot_be_vouched_for_gets_a_complete_run_and_says_why(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    from .destinations import LocalDestination

    backend, reason = UNVOUCHED[what]
    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    twin.run(settings, backend)
    ours = twin.destinations["ours"]
    if what == "no sync record":
        ours.delete(ours.record_key)
    elif what == "an unreadable sync record":
        ours.put(ours.record_key, b"{")
    elif what == "another Django version":
        monkeypatch.setattr("django.get_version", lambda: "99.0")
    twin.change(edit("img/h.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"))
    printed, planned = twin.dry_run(settings, backend)
    assert (planned["mode"], planned["reason"]) == ("full", reason)
    assert printed[0] == f"post-processing: full run because {reason}"
    done = twin.run(settings, backend)  # equal to stock's: compared in run()
    assert (done["mode"], done["reason"]) == ("full", reason)
    assert "files" not in done


def test_a_reference_cycle_fails_as_a_complete_run_fails(
    compared: tuple[Twin, str], settings: Any
) -> None:
    twin, backend = compared
    twin.run(settings, backend)
    twin.change(edit("css/plain.css", "@import 'theme/dark.css';\nq { color: red }\n"))
    twin.change(edit("css/theme/dark.css", "@import '../plain.css';\n"))
    done = twin.run(settings, backend)  # both fail alike: compared in run()
    assert twin.error is not None and "Max post-process passes exceeded" in twin.error
    assert (done["mode"], done["reason"]) == (
        "full",
        "references would not settle in a complete run",
    )


def test_a_removed_file_still_referenced_resolves_to_its_old_copy_as_stock_does(
    tmp_path: Path, settings: Any
) -> None:
    from .destinations import LocalDestination

    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    twin.run(settings, MANIFEST)
    twin.change(remove("img/h.svg"))
    # Stock finds the copy an earlier run left in STATIC_ROOT; so do we.
    done = twin.run(settings, MANIFEST)
    assert twin.error is None
    assert done["files"] == {
        "css/main.css": "references css/base.css",
        "css/base.css": "references img/h.svg",
    }
    # Each later run looks for it again, as a complete run does: once the
    # old copy is gone too, both fail alike.
    assert twin.run(settings, MANIFEST)["files"] == done["files"]
    for destination in twin.destinations.values():
        for name in destination.names():
            if name.startswith("img/h."):
                destination.delete(name)
    done = twin.run(settings, MANIFEST)  # the same error: compared in run()
    assert twin.error is not None and "'img/h.svg' could not be found" in twin.error
    assert done["files"] == {
        "css/main.css": "references css/base.css",
        "css/base.css": "references img/h.svg",
    }


# --- a property over random trees and changes --------------------------------

NAMES = [
    f"d{d}/" * depth + f"f{n}" for depth in range(3) for d in (1, 2) for n in range(4)
]


@st.composite
def graphs(draw: Any) -> dict[str, bytes | str]:
    """CSS files referring to earlier CSS files and to images, in folders of
    several depths (the order of passes depends on depth)."""
    css = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=7, unique=True))
    images = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    tree: dict[str, bytes | str] = {f"{name}.png": f"png {name}" for name in images}
    for index, name in enumerate(css):
        targets = draw(
            st.lists(
                st.sampled_from(
                    [f"{n}.png" for n in images] + [f"{n}.css" for n in css[:index]]
                ),
                max_size=3,
                unique=True,
            )
        )
        depth = name.count("/")
        lines = [f"/* {name} */"]
        lines += [
            f".r{i} {{ background: url('{'../' * depth}{t}'); }}"
            for i, t in enumerate(targets)
        ]
        tree[f"{name}.css"] = "\n".join(lines) + "\n"
    return tree


#: A change: a file edited, a file added that refers to another, a file removed.
CHANGE_KINDS = st.tuples(
    st.sampled_from(["edit", "add", "remove"]), st.integers(min_value=0)
)


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tree=graphs(), changes=st.lists(CHANGE_KINDS, min_size=1, max_size=3))
def test_incremental_post_processing_equals_a_complete_run(
    settings: Any, tree: dict[str, bytes | str], changes: list[tuple[str, int]]
) -> None:
    from .destinations import LocalDestination

    with tempfile.TemporaryDirectory(prefix="csp-pp-property-") as tmp:
        root = Path(tmp)
        twin = Twin(root, lambda side: LocalDestination(root / side / "root"), tree)
        current = dict(tree)
        with override_settings(STATIC_URL="/static/"):
            twin.run(settings, MANIFEST)
            for kind, number in changes:
                names = sorted(current)
                name = names[number % len(names)]
                if kind == "remove" and len(names) > 1:
                    del current[name]
                    twin.change(remove(name))
                else:
                    if kind == "add":
                        text = f".n {{ background: url('{name}'); }}\n"
                        name = f"new{number % 5}.css"
                    else:
                        text = f"/* change {number} */\n{current[name]!s}"
                    current[name] = text
                    twin.change(edit(name, text))
                twin.run(settings, MANIFEST)
        shutil.rmtree(root, ignore_errors=True)


def tree_state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``root``: its bytes and modification time."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("keep_only_hashed", [False, True], ids=["all", "hashed"])
def test_a_whitenoise_dry_run_names_what_the_run_then_writes_and_touches_nothing(
    tmp_path: Path, settings: Any, keep_only_hashed: bool
) -> None:
    """Simulated to the end, compression included (WhiteNoise unlinks and
    writes by path: a dry run must do neither)."""
    import io

    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils.functional import empty

    from .destinations import LocalDestination

    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = keep_only_hashed
    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    twin.run(settings, WHITENOISE)
    twin.change(CHANGES["an image referenced through an @import"][0])
    root = tmp_path / "ours/root"
    before = tree_state(root)
    settings.STATICFILES_DIRS = [str(twin.sources["ours"])]
    twin.destinations["ours"].use(settings, WHITENOISE)
    staticfiles_storage._wrapped = empty
    said = io.StringIO()
    report = tmp_path / "dry.json"
    run_collectstatic(dry_run=True, verbosity=1, stdout=said, report=str(report))
    assert tree_state(root) == before
    dry = json.loads(report.read_text())["post_processing"]
    assert dry["status"] == "simulated"
    lines = [line for line in said.getvalue().splitlines() if line.startswith("Would")]
    twin.run(settings, WHITENOISE)
    outputs = sorted(
        name
        for name in twin.written
        if name not in (RECORD, "staticfiles.json", "img/h.svg")
    )
    assert dry["would_write"] == outputs
    assert {name.rsplit(".", 1)[1] for name in outputs} == {"css", "svg", "gz", "br"}

    def source_of(output: str) -> str:
        return re.sub(r"\.[0-9a-f]{12}\.", ".", re.sub(r"\.(gz|br)$", "", output))

    assert lines == [
        f"Would copy ({'new' if keep_only_hashed else 'changed'}) img/h.svg (341 B)",
        *(f"Would post-process {source_of(name)} -> {name}" for name in outputs),
        "Would write staticfiles.json",
    ]


IMPORT_TREE: dict[str, bytes | str] = {
    "css/a.css": "@import url('b.css');\np { background: url(../i/x.png) }\n",
    "css/b.css": "p { background: url('../i/y.png') }\n",
    "i/x.png": "x" * 100,
    "i/y.png": "y" * 100,
}


def imported_css_changed(tmp_path: Path, settings: Any) -> Twin:
    """WhiteNoise keeping only hashed files, after a complete run: css/a.css
    imports css/b.css, which then changes (a.css gets an intermediate name)."""
    from .destinations import LocalDestination

    settings.WHITENOISE_KEEP_ONLY_HASHED_FILES = True
    make = lambda side: LocalDestination(tmp_path / side / "root")  # noqa: E731
    twin = Twin(tmp_path, make, IMPORT_TREE)
    twin.run(settings, WHITENOISE)
    twin.change(edit("css/b.css", "p { background: url('../i/y.png') } /* 2 */\n"))
    return twin


def test_what_whitenoise_unlinks_after_writing_it_is_not_reported_written(
    tmp_path: Path, settings: Any
) -> None:
    """WHITENOISE_KEEP_ONLY_HASHED_FILES: WhiteNoise unlinks the intermediate
    hashed copies itself (not through the storage): the report's 'written'
    names only files that are there, as the dry run's 'would_write' does."""
    twin = imported_css_changed(tmp_path, settings)
    _, planned = twin.dry_run(settings, WHITENOISE)
    done = twin.run(settings, WHITENOISE)
    there = set(twin.contents("ours"))
    assert [name for name in done["written"] if name not in there] == []
    assert done["written"] == planned["would_write"]


def test_whitenoise_and_brotli_versions_key_only_whitenoise_storages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WhiteNoise storage (or a subclass) post-processes again when
    WhiteNoise's or Brotli's version changes; Django's own storage does not
    depend on them, and their versions are not even read for it."""
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage
    from whitenoise.storage import CompressedManifestStaticFilesStorage

    from collectstatic_plus import vouch

    from .storages import OwnWhiteNoiseStorage

    read: list[str] = []
    version = "1.0"

    def version_of(package: str) -> str:
        read.append(package)
        return version

    monkeypatch.setattr(vouch, "_version_of", version_of)

    django_storage = ManifestStaticFilesStorage(location=str(tmp_path))
    before = vouch.settings_key(django_storage)
    assert read == []
    keys = {}
    for storage in (CompressedManifestStaticFilesStorage, OwnWhiteNoiseStorage):
        keys[storage] = vouch.settings_key(storage(location=str(tmp_path)))
    assert read == ["whitenoise", "brotli"] * 2
    version = "2.0"
    for storage, key in keys.items():
        assert vouch.settings_key(storage(location=str(tmp_path))) != key
    assert vouch.settings_key(django_storage) == before


QUERY_TREE: dict[str, bytes | str] = {
    # a.css names itself with a query string: stock hashes the original for
    # it (a query misses hashed_files), so a complete run settles; ours
    # sees a cycle, drops its incremental attempt and runs a complete one.
    "x/y/a.css": (
        "@import url('../b.css');\n@import url('../c.css');\n"
        ".s { background: url('a.css?v=1') }\n"
    ),
    "x/b.css": ".b { background: url('../img.png') }\n",
    "x/c.css": ".c { background: url('../img.png') }\n",
    "img.png": b"img",
}


@pytest.mark.parametrize("change", ["a complete run settles", "it does not"])
def test_a_dropped_or_failed_attempt_leaves_nothing_stock_would_not(
    tmp_path: Path, settings: Any, change: str
) -> None:
    """On local disk rewritten files are written at once: an incremental
    attempt that is dropped, or a post-process that fails, takes back what
    it wrote where nothing was."""
    from .destinations import LocalDestination

    twin = Twin(
        tmp_path, lambda side: LocalDestination(tmp_path / side / "root"), QUERY_TREE
    )
    assert twin.run(settings, MANIFEST)["mode"] == "full"
    if change == "it does not":
        before = set(twin.contents("ours"))
        twin.change(edit("x/c.css", "@import url('y/a.css');\n"))  # a real cycle
        twin.run(settings, MANIFEST)  # both fail (stock leaves what it wrote)
        assert twin.error is not None and "Max post-process passes" in twin.error
        assert set(twin.contents("ours")) == before
        return
    twin.change(edit("x/y/a.css", QUERY_TREE["x/y/a.css"] + "/* 2 */\n"))
    twin.change(edit("x/b.css", ".b { background: url('../img.png') } /* 2 */\n"))
    done = twin.run(settings, MANIFEST)  # (equal to stock's, file for file)
    assert (done["mode"], done["reason"]) == (
        "full",
        "references would not settle in a complete run",
    )


def test_delete_keeps_a_removed_file_that_a_kept_file_still_refers_to(
    tmp_path: Path, settings: Any, static_root: Path
) -> None:
    """The CSS still names img/gone.png, whose source was removed: its
    post-process reads the copy in STATIC_ROOT (as stock's in place does), so
    --delete keeps that copy, and a complete run later still finds it."""
    tree = {"css/a.css": "a { background: url('../img/gone.png') }\n"}
    source = write_tree(tmp_path / "src", {**tree, "img/gone.png": b"png"})
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    run_collectstatic(verbosity=0)
    (source / "img/gone.png").unlink()
    run_collectstatic(verbosity=0, delete=True)
    assert (static_root / "img/gone.png").read_bytes() == b"png"
    run_collectstatic(verbosity=0, delete=True, force=True)
    assert (static_root / "img/gone.png").read_bytes() == b"png"


def test_a_django_storages_class_is_keyed_by_django_storages_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(S3ManifestStaticStorage and its kin: their code changes with
    django-storages' version; the class here stands in, without a bucket.)"""
    from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

    from collectstatic_plus import vouch

    version = "1.14.3"
    monkeypatch.setattr(vouch, "_version_of", lambda package: version)
    kin = type(
        "S3ManifestStaticStorage",
        (ManifestStaticFilesStorage,),
        {"__module__": "storages.backends.s3"},
    )
    key = vouch.settings_key(kin(location=str(tmp_path)))
    version = "1.14.6"
    assert vouch.settings_key(kin(location=str(tmp_path))) != key


def test_a_record_naming_a_hashed_copy_that_is_not_there_has_it_processed_again(
    tmp_path: Path, settings: Any
) -> None:
    from .destinations import LocalDestination

    twin = Twin(tmp_path, lambda side: LocalDestination(tmp_path / side / "root"))
    assert twin.run(settings, MANIFEST)["mode"] == "full"
    record = tmp_path / "ours" / "root" / RECORD
    document = json.loads(record.read_bytes())
    for row in document["processed"]:
        if row[0] == "css/base.css":  # damaged, or edited by hand
            row[2] = "css/base.0123456789ab.css"
    record.write_text(json.dumps(document))
    twin.change(edit("text/notes.txt", "other notes"))

    done = twin.run(settings, MANIFEST)  # equal to stock's destination
    assert done["files"]["css/base.css"] == "its output is missing from the destination"


#: A package that ships its own compressed files beside their source: the
#: compressor's output has the same name (js/a.js.gz, js/a.js.br).
SHIPPED: dict[str, bytes | str] = {
    "js/a.js": "var shipped = 1;\n" * 200,
    "js/a.js.gz": gzip.compress(b"shipped by the package " * 10, mtime=0),
    "js/a.js.br": b"shipped, not the compressor's",
    "text/notes.txt": "notes " * 100,
}


@pytest.mark.parametrize("backend", [WHITENOISE, COMPRESSED])
def test_a_shipped_compressed_file_is_compressed_over_as_stock_does_and_settles(
    tmp_path: Path, settings: Any, backend: str
) -> None:
    """Stock copies the shipped js/a.js.gz when it is new, then the compressor
    writes its own over it: ours post-processes js/a.js again whenever the
    collection put the shipped file back over its output, and else leaves
    both alone (as stock's modification times do)."""
    from .destinations import LocalDestination

    root = tmp_path
    twin = Twin(root, lambda side: LocalDestination(root / side / "root"), SHIPPED)
    assert twin.run(settings, backend)["mode"] == "full"  # (each run: as stock's)
    assert twin.run(settings, backend) == {"status": "up to date"}
    assert twin.written == []
    twin.change(edit("js/a.js.gz", "another shipped file"))
    _printed, planned = twin.dry_run(settings, backend)  # (it writes nothing)
    again = twin.run(settings, backend)
    why = "a collected file replaced its output js/a.js.gz"
    files = {"js/a.js": why, "js/a.js.gz": "changed"}
    assert (again["mode"], again["files"]) == ("incremental", files)
    assert planned["files"] == again["files"]
    assert "js/a.js.gz" in planned["would_write"]
    twin.change(edit("text/notes.txt", "other notes " * 100))
    changed = twin.run(settings, backend)
    assert changed["files"] == {"text/notes.txt": "changed"}
    assert twin.run(settings, backend) == {"status": "up to date"}
    assert twin.written == []


def test_what_whitenoise_fails_to_unlink_is_removed_as_any_failed_write(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WHITENOISE_KEEP_ONLY_HASHED_FILES, its delete_files failing before it
    unlinked anything: the intermediate hashed copy this attempt wrote is
    still there, so the failed attempt removes it with the rest of what it
    wrote (not taken for unlinked and left behind, claimed by no record)."""
    from whitenoise.storage import CompressedManifestStaticFilesStorage

    twin = imported_css_changed(tmp_path, settings)
    before = set(twin.contents("ours"))
    given: list[str] = []

    def delete_files(self: Any, names: Any) -> None:
        given.extend(names)
        raise PermissionError("denied")

    storage = CompressedManifestStaticFilesStorage
    monkeypatch.setattr(storage, "delete_files", delete_files)
    twin.use("ours", settings, WHITENOISE)
    with pytest.raises(PermissionError):
        run_collectstatic(verbosity=0)
    written = [n for n in given if n not in before and n not in IMPORT_TREE]
    assert written  # intermediate hashed copies this attempt wrote
    assert set(written) & set(twin.contents("ours")) == set()
