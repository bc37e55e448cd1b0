from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
import pytest
from django.contrib.staticfiles.management.commands import collectstatic as stock
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.utils.functional import empty

from collectstatic_plus.management.commands.collectstatic import Command

from .servers.azurite import AzuriteServer, AzuriteUnavailable
from .servers.gcs import GCSServer
from .servers.s3 import S3Server

NO_BUCKET_METADATA = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"


def default_sigint() -> None:
    """``preexec_fn`` for a child that will get SIGINT, as from a terminal.

    A job started in the background by a shell without job control inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt: the child
    would run on as if nothing was sent.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(done: Callable[[], bool], run: subprocess.Popen[str]) -> None:
    """Until ``done()``, while the child ``run`` is still running (a minute
    at most)."""
    deadline = time.monotonic() + 60
    while not done():
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
    return root


RECORD = ".collectstatic-plus.json"


def record_files(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A sync record's rows as path -> {md5, size, source, seen}, leaving out
    what is null; ``seen`` holds the non-null ``seen_*`` columns."""
    columns = document["columns"]
    files = {}
    for row in document["files"]:
        values = dict(zip(columns, row, strict=True))
        entry = {
            k: values[k] for k in ("md5", "size", "source") if values[k] is not None
        }
        if values["seen_size"] is not None:
            entry["seen"] = {
                key[len("seen_") :]: values[key]
                for key in ("seen_size", "seen_etag", "seen_mtime_ns")
                if values[key] is not None
            }
        files[values["path"]] = entry
    return files


def read_tree(root: Path, record: bool = False) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks followed) as relative path -> bytes.

    The sync record is left out unless ``record`` is true.
    """
    found = {}
    for dirpath, _dirs, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath) / filename
            name = path.relative_to(root).as_posix()
            if record or name != RECORD:
                found[name] = path.read_bytes()
    return found


def many(root: Path, count: int) -> Path:
    """``count`` small CSS files in five folders under ``root``."""
    return write_tree(
        root, {f"d{i % 5}/f{i}.css": f".c{i} {{ color: red }}\n" for i in range(count)}
    )


def visible(root: Path) -> dict[str, bytes]:
    """The files under ``root`` that stock's default ignore patterns keep."""
    return {
        name: data
        for name, data in read_tree(root).items()
        if not name.startswith(".") and not name.endswith("~")
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def use(settings: Any, storage: dict[str, Any]) -> None:
    """Make ``storage`` (a STORAGES entry) the staticfiles storage."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": storage}


SMALL_TREE: dict[str, bytes | str] = {
    "css/site.css": "body { background: url('../img/bg.png'); }\n",
    "css/print.css": "@media print { body { color: black; } }\n",
    "js/app.js": "console.log('app');\n",
    "js/vendor/lib.js": "var lib = 1;\n",
    "img/bg.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "fonts/icons.woff2": bytes(range(255, -1, -1)) * 4,
    "deep/a/b/c/file.txt": "deep\n",
    ".hidden": "ignored by default\n",
    "backup.txt~": "ignored by default\n",
}


MANIFEST_TREE: dict[str, bytes | str] = {
    "css/a.css": "@import url('b.css');\np { background: url(../i/x.png) }\n",
    "css/b.css": "p { background: url('../i/y.png') }\n",
    "css/c.css": "q { color: red }\n",
    "i/x.png": b"x" * 100,
    "i/y.png": b"y" * 100,
    "js/app.js": "console.log(1);\n",
}


ADDED_LINE = re.compile(
    r"^(Phases: |Bytes copied: |Requests: |Post-processing up to date\.$"
    r"|action +files +bytes$|(new|changed|unchanged|deleted|conflict|failed) +\d"
    r"|post-processing: |  \S|Would |Dry run: )"
)


def stock_view(output: str) -> str:
    """Our output less the lines we add to stock's (report table, phases)."""
    return "".join(
        line for line in output.splitlines(keepends=True) if not ADDED_LINE.match(line)
    )


@dataclass
class Run:
    """What one collectstatic run printed."""

    stdout: str
    stderr: str


def run_collectstatic(
    command: Any = None,
    stdout: io.StringIO | None = None,
    stderr: io.StringIO | None = None,
    **options: Any,
) -> Run:
    """Run collectstatic (ours unless ``command`` is given) and capture output.

    Pass ``stdout``/``stderr`` to read them when the command raises.
    """
    stdout = stdout if stdout is not None else io.StringIO()
    stderr = stderr if stderr is not None else io.StringIO()
    options.setdefault("interactive", False)
    call_command(
        command if command is not None else "collectstatic",
        stdout=stdout,
        stderr=stderr,
        **options,
    )
    return Run(stdout.getvalue(), stderr.getvalue())


def run_stock(**options: Any) -> Run:
    return run_collectstatic(stock.Command(), **options)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1, in its own process, for the session."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """Azurite's blob service on 127.0.0.1, in its own process, for the session."""
    try:
        server = AzuriteServer().start()
    except AzuriteUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"Azurite is required on CI and could not start: {error}")
        pytest.skip(f"LOUD SKIP: Azurite could not start, Azure untested: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    """The GCS emulator on 127.0.0.1, in its own process, for the session.

    If it cannot start, the GCS tests are skipped with the reason, except in
    CI (``CI`` set), where that is a failure.
    """
    try:
        import gcp_storage_emulator  # type: ignore[import-untyped]  # noqa: F401
        import storages.backends.gcloud  # noqa: F401

        server = GCSServer().start()
    except Exception as error:
        message = f"GCS emulator unavailable, GCS tests not run: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", server.endpoint_url)
        patch.setenv(NO_BUCKET_METADATA, "true")
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def storages_override_keeps_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django 4.2 only: overriding STORAGES in a test drops its OPTIONS.

    Its UserSettingsHolder mirrors STORAGES into the deprecated
    STATICFILES_STORAGE, which then counts as overridden and replaces the
    alias with a bare BACKEND. Real settings modules are not affected.
    """
    if django.VERSION >= (5, 0):
        return
    from django.conf import UserSettingsHolder

    original = UserSettingsHolder.is_overridden

    def is_overridden(self: Any, setting: str) -> bool:
        if setting in ("STATICFILES_STORAGE", "DEFAULT_FILE_STORAGE"):
            return False
        return bool(original(self, setting))

    monkeypatch.setattr(UserSettingsHolder, "is_overridden", is_overridden)


@pytest.fixture(autouse=True)
def fresh_staticfiles_storage() -> Iterator[None]:
    """Each test sees the storage its settings configure."""
    staticfiles_storage._wrapped = empty
    yield
    staticfiles_storage._wrapped = empty


@pytest.fixture
def static_root(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "static_root"
    settings.STATIC_ROOT = str(root)
    return root


@pytest.fixture
def sources(tmp_path: Path, settings: Any) -> Path:
    """A small source tree, listed in STATICFILES_DIRS."""
    root = write_tree(tmp_path / "sources", SMALL_TREE)
    settings.STATICFILES_DIRS = [str(root)]
    return root


__all__ = [
    "Command",
    "Run",
    "many",
    "md5",
    "read_tree",
    "run_collectstatic",
    "run_stock",
    "use",
    "visible",
]
