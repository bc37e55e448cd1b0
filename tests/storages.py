"""Storages used by the tests: a non-local one and ones that misbehave."""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.storage import (
    ManifestFilesMixin,
    ManifestStaticFilesStorage,
    StaticFilesStorage,
)
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils._os import safe_join
from storages.backends.s3 import S3ManifestStaticStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage


class RemoteLikeStorage(Storage):
    """A storage with no local ``path``, like a remote one, kept in a directory.

    It implements only what a minimal third-party backend would: ``_open``,
    ``_save``, ``exists``, ``delete``, ``listdir``, ``size`` and
    ``get_modified_time``.
    """

    def __init__(self, location: str | None = None) -> None:
        self.root = location or str(settings.STATIC_ROOT)

    def _full(self, name: str) -> str:
        return safe_join(self.root, name)

    def _open(self, name: str, mode: str = "rb") -> Any:
        return File(open(self._full(name), mode))

    def _save(self, name: str, content: Any) -> str:
        full = self._full(name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            for chunk in content.chunks():
                handle.write(chunk)
        return name

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._full(name))

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._full(name))

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        full = self._full(path)
        entries = list(os.scandir(full)) if os.path.isdir(full) else []
        return (
            [e.name for e in entries if e.is_dir()],
            [e.name for e in entries if not e.is_dir()],
        )

    def size(self, name: str) -> int:
        return os.path.getsize(self._full(name))

    def get_modified_time(self, name: str) -> Any:
        stamp = os.path.getmtime(self._full(name))
        return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc)


class CountingRemoteLikeStorage(RemoteLikeStorage):
    """Counts the ``exists`` calls it gets, by name; has URLs."""

    asked: dict[str, int] = {}

    def exists(self, name: str) -> bool:
        counts = CountingRemoteLikeStorage.asked
        counts[name] = counts.get(name, 0) + 1
        return super().exists(name)

    def url(self, name: str | None) -> str:
        return f"{settings.STATIC_URL}{name}"


class RemoteLikeManifestStorage(ManifestFilesMixin, CountingRemoteLikeStorage):
    """Django's manifest storage over a storage that cannot list."""


class FailingStorage(StaticFilesStorage):
    """Fails to save or delete any file whose name contains ``FAIL_ON`` (an
    env var)."""

    def _save(self, name: str, content: Any) -> str:
        if os.environ.get("FAIL_ON", "\0") in name:
            raise OSError(f"simulated failure writing {name}")
        return super()._save(name, content)

    def delete(self, name: str) -> None:
        if os.environ.get("FAIL_ON", "\0") in name:
            raise OSError(f"simulated failure deleting {name}")
        super().delete(name)


class ConcurrencyProbe:
    """Mixin: sleeps in every save and records how many saves overlap."""

    delay = float(os.environ.get("SLOW_STORAGE_DELAY", "0.05"))
    lock = threading.Lock()
    running = 0
    peak = 0
    threads: set[str] = set()

    @classmethod
    def reset(cls) -> None:
        with cls.lock:
            ConcurrencyProbe.running = ConcurrencyProbe.peak = 0
            ConcurrencyProbe.threads = set()

    def _save(self, name: str, content: Any) -> str:
        probe = ConcurrencyProbe
        if name.startswith(".collectstatic-plus"):  # the sync record
            return super()._save(name, content)  # type: ignore[misc, no-any-return]
        with probe.lock:
            probe.running += 1
            probe.peak = max(probe.peak, probe.running)
            probe.threads.add(threading.current_thread().name)
        try:
            time.sleep(probe.delay)
            return super()._save(name, content)  # type: ignore[misc, no-any-return]
        finally:
            with probe.lock:
                probe.running -= 1


class SlowStorage(ConcurrencyProbe, StaticFilesStorage):
    """A local storage whose saves are slow and observed."""


class SlowRemoteStorage(ConcurrencyProbe, RemoteLikeStorage):
    """A non-local storage whose saves are slow and observed."""


class FailingManifestStorage(ManifestStaticFilesStorage):
    """A manifest storage that fails like ``FailingStorage``."""

    def _save(self, name: str, content: Any) -> str:
        if os.environ.get("FAIL_ON", "\0") in name:
            raise OSError(f"simulated failure writing {name}")
        return super()._save(name, content)


def s3_storage_classes() -> tuple[type[Any], ...]:
    from storages.backends.s3 import S3Storage

    class ObservedS3Storage(S3Storage):  # type: ignore[misc]
        """Records the client settings each upload runs with."""

        seen: list[tuple[bool, int, int]] = []

        def _save(self, name: str, content: Any) -> str:
            if name.startswith(".collectstatic-plus"):
                return super()._save(name, content)  # type: ignore[no-any-return]
            type(self).seen.append(
                (
                    self.transfer_config.use_threads,
                    self.client_config.max_pool_connections,
                    id(self.connection.meta.client),
                )
            )
            return super()._save(name, content)  # type: ignore[no-any-return]

    class FailingS3Storage(S3Storage):  # type: ignore[misc]
        """Fails to upload any file whose name contains ``FAIL_ON``."""

        def _save(self, name: str, content: Any) -> str:
            if os.environ.get("FAIL_ON", "\0") in name:
                raise OSError(f"simulated failure writing {name}")
            return super()._save(name, content)  # type: ignore[no-any-return]

    class RefusingS3Storage(S3Storage):  # type: ignore[misc]
        """Answers the upload of a file whose name contains ``REFUSE_ON`` as a
        bucket policy denying its key would: 403 AccessDenied."""

        def _save(self, name: str, content: Any) -> str:
            if os.environ.get("REFUSE_ON", "\0") in name:
                from botocore.exceptions import ClientError

                error = {"Code": "AccessDenied", "Message": "Access Denied"}
                meta = {"HTTPStatusCode": 403}
                raise ClientError(
                    {"Error": error, "ResponseMetadata": meta}, "PutObject"
                )
            return super()._save(name, content)  # type: ignore[no-any-return]

    class SlowS3Storage(S3Storage):  # type: ignore[misc]
        """Sleeps ``SLOW_STORAGE_DELAY`` seconds before each upload."""

        def _save(self, name: str, content: Any) -> str:
            time.sleep(float(os.environ.get("SLOW_STORAGE_DELAY", "0")))
            return super()._save(name, content)  # type: ignore[no-any-return]

    class LowercasingS3Storage(S3Storage):  # type: ignore[misc]
        """Saves each file under its name in lower case."""

        def get_available_name(self, name: str, max_length: Any = None) -> str:
            return super().get_available_name(name.lower(), max_length)  # type: ignore[no-any-return]

    return (
        ObservedS3Storage,
        FailingS3Storage,
        RefusingS3Storage,
        SlowS3Storage,
        LowercasingS3Storage,
    )


(
    ObservedS3Storage,
    FailingS3Storage,
    RefusingS3Storage,
    SlowS3Storage,
    LowercasingS3Storage,
) = s3_storage_classes()


class SeparateManifestStorage(ManifestStaticFilesStorage):
    """Keeps its manifest in another storage, beside STATIC_ROOT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.core.files.storage import FileSystemStorage

        folder = os.path.join(os.path.dirname(str(settings.STATIC_ROOT)), "manifest")
        super().__init__(
            *args, manifest_storage=FileSystemStorage(location=folder), **kwargs
        )


class SlowManifestStorage(ManifestStaticFilesStorage):
    """Sleeps ``SLOW_STORAGE_DELAY`` seconds in every save of a hashed file."""

    def _save(self, name: str, content: Any) -> str:
        time.sleep(float(os.environ.get("SLOW_STORAGE_DELAY", "0")))
        return super()._save(name, content)


class SaveLogManifestStorage(ManifestStaticFilesStorage):
    """Takes 50 ms per save and logs each: its name, thread, start and end."""

    saves: list[tuple[str, str, float, float]] = []

    def _save(self, name: str, content: Any) -> str:
        start = time.monotonic()
        time.sleep(0.05)
        saved = super()._save(name, content)
        entry = (name, threading.current_thread().name, start, time.monotonic())
        type(self).saves.append(entry)
        return saved


class BannerManifestStorage(ManifestStaticFilesStorage):
    """Saves every CSS file with a banner first: its own ``_save`` decides by
    the name it is given."""

    def _save(self, name: str, content: Any) -> str:
        if name.endswith(".css"):
            content.seek(0)
            content = ContentFile(b"/* (c) */\n" + content.read())
        return str(super()._save(name, content))


class RawReadManifestStorage(ManifestStaticFilesStorage):
    """Reads what it saves from the underlying file, as AzureStorage does."""

    def _save(self, name: str, content: Any) -> str:
        return str(super()._save(name, File(getattr(content, "file", content))))


class JSModuleManifestStorage(ManifestStaticFilesStorage):
    """Rewrites JS module imports too (Django's opt-in)."""

    support_js_module_import_aggregation = True


class JSModuleWhiteNoiseStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage, rewriting JS module imports too."""

    support_js_module_import_aggregation = True


class JSModuleS3ManifestStorage(S3ManifestStaticStorage):  # type: ignore[misc]
    """django-storages' S3 manifest storage, rewriting JS module imports too."""

    support_js_module_import_aggregation = True


class OwnFileHashStorage(ManifestStaticFilesStorage):
    """Hashes as Django does, but in its own ``file_hash``."""

    def file_hash(self, name: str, content: Any = None) -> str | None:
        return super().file_hash(name, content)


class OwnHashedNameStorage(ManifestStaticFilesStorage):
    """Names as Django does, but in its own ``hashed_name``."""

    def hashed_name(self, name: str, content: Any = None, filename: Any = None) -> str:
        return super().hashed_name(name, content, filename)


class OwnURLConverterStorage(ManifestStaticFilesStorage):
    """Rewrites references as Django does, but in its own ``url_converter``."""

    def url_converter(self, *args: Any, **kwargs: Any) -> Any:
        return super().url_converter(*args, **kwargs)


class OwnPostProcessStorage(ManifestStaticFilesStorage):
    """Post-processes as Django does, but in its own ``post_process``."""

    def post_process(self, *args: Any, **kwargs: Any) -> Any:
        yield from super().post_process(*args, **kwargs)


class CheckingStorage(StaticFilesStorage):
    """Checks references even in a dry run, as some third-party storages do:
    a CSS file naming ``missing.png`` fails post-processing."""

    def post_process(self, paths: dict[str, Any], dry_run: bool = False) -> Any:
        for name, (storage, path) in paths.items():
            with storage.open(path) as handle:
                if b"missing.png" in handle.read():
                    error = ValueError(f"'{name}' refers to missing.png")
                    yield name, None, error
                    return
            yield name, name, False


class OwnWhiteNoiseStorage(CompressedManifestStaticFilesStorage):
    """A project's own subclass of WhiteNoise's storage, changing nothing."""


class ShortHashStorage(ManifestStaticFilesStorage):
    """Hashed names with 8 hex digits, not Django's 12."""

    def file_hash(self, name: str, content: Any = None) -> str | None:
        digest = super().file_hash(name, content)
        return digest[:8] if digest else digest


class UnbuildableStorage(Storage):
    """Refuses to be built, as a backend missing a required option may."""

    def __init__(self, **options: Any) -> None:
        raise NotImplementedError("this storage needs an option")
