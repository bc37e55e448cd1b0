"""Hand the collected files to the storage's own ``post_process``, as stock does.

Remote or local, the storage's I/O is staged (see :mod:`.staging`); and when
nothing post-processing depends on has changed since the last run (the sync
record keeps a key of it, :func:`inputs_key`), it is skipped altogether.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

import django
from django.conf import settings
from django.core.files.storage import Storage
from django.core.management.base import CommandError, OutputWrapper

from . import __version__
from .backends.base import Backend, Listing
from .digest import Digest
from .options import RunOptions
from .progress import Progress
from .record import Record
from .report import Report
from .retry import Retry
from .sources import Source
from .staging import FlushError, Staging, unwrap

FoundFiles = dict[str, tuple[Storage, str]]

#: Storage attributes that change what HashedFilesMixin produces.
HASHING_ATTRIBUTES = (
    "manifest_name",
    "manifest_strict",
    "max_post_process_passes",
    "keep_intermediate_files",
    "support_js_module_import_aggregation",
    "patterns",
)


def stable(value: Any) -> Any:
    """``value`` as plain data that is the same in every process.

    Objects such as credentials are reduced to their class: their repr holds
    a memory address that would change the key on every run.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [stable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): stable(item) for key, item in sorted(value.items())}
    if isinstance(value, re.Pattern):  # also a lazily compiled one (Django 6.x)
        return {"pattern": stable(value.pattern), "flags": value.flags}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def inputs_key(storage: Storage, digests: Mapping[str, Digest]) -> str:
    """Everything post-processing depends on, as one hash.

    Source contents, the storage's class and options, Django and this
    package's versions, and STATIC_URL (absolute URLs are rewritten by it).
    """
    cls = storage.__class__
    deconstruct = getattr(storage, "deconstruct", None)
    options = deconstruct()[1:] if callable(deconstruct) else ()
    inputs = {
        "files": sorted((path, d.md5) for path, d in digests.items()),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "options": stable(options),
        "attributes": {
            a: stable(getattr(storage, a, None)) for a in HASHING_ATTRIBUTES
        },
        "django": django.get_version(),
        "collectstatic_plus": __version__,
        "static_url": str(settings.STATIC_URL),
    }
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


#: Django 6.1 turned a failed post-process into a CommandError with its notes.
RAISES_COMMAND_ERROR = django.VERSION >= (6, 1)


class Host(Protocol):
    """The command's output."""

    stderr: OutputWrapper

    def log(self, msg: str, level: int = 2) -> None: ...


class PostProcessing:
    """The post-process step of a run, and what it leaves for the next steps."""

    def __init__(
        self,
        storage: Storage,
        backend: Backend,
        retry: Retry,
        report: Report,
        host: Host,
        options: RunOptions,
        progress_to: TextIO | None,
    ) -> None:
        self.storage = storage
        self.backend = backend
        self.retry = retry
        self.report = report
        self.host = host
        self.options = options
        self.progress_to = progress_to
        #: The key of what a complete post-process was given (for the record).
        self.key: str | None = None
        #: The hashed names of the manifest this run wrote, sorted.
        self.manifest: list[str] | None = None
        #: Names the post-processor wrote (hashed copies, for instance).
        self.outputs: set[str] = set()
        #: The last name each original was post-processed as.
        self.names: dict[str, str] = {}

    def run(
        self,
        sources: Mapping[str, Source],
        listing: Listing | None,
        previous: Record | None,
        copied: bool,
    ) -> list[str]:
        """Post-process unless it is up to date; the originals processed."""
        storage, report = self.storage, self.report
        if not hasattr(storage, "post_process"):
            return []
        digests = {p: s.digest for p, s in sources.items() if s.digest is not None}
        key = inputs_key(storage, digests)
        if not copied and self.current(key, previous, listing):
            self.key = key
            report.post_processing = {"status": "up to date"}
            self.host.log("Post-processing up to date.", level=1)
            return []
        found = {path: (s.storage, s.path) for path, s in sources.items()}
        staging = Staging(
            storage,
            self.backend,
            found,
            listing,
            self.options.workers,
            simulate=self.options.dry_run,
            retry=self.retry,
        )
        try:
            processed = self.staged(found, staging)
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted during post-processing; the previous manifest is "
                "still in place. Run collectstatic again to finish.",
                returncode=130,
            ) from None
        if processed is None:
            return []
        if not staging.simulate:
            self.key = key
            hashed = getattr(storage, "hashed_files", None)
            if isinstance(hashed, dict):
                self.manifest = sorted(set(hashed.values()))
        report.post_processing = staging.outcome()
        for original, hashed_name in self.names.items():
            if original in report.files:
                report.file(
                    original, report.files[original].action, hashed_name=hashed_name
                )
        return processed

    def current(
        self, key: str, previous: Record | None, listing: Listing | None
    ) -> bool:
        """Same inputs as the last complete post-process, and its output is there.

        Not after a run that copied anything: a post-processor may have
        removed what it wrote last time (WHITENOISE_KEEP_ONLY_HASHED_FILES).
        """
        storage = self.storage
        name = getattr(storage, "manifest_name", None)
        if previous is None or previous.state.get("postprocess") != key or not name:
            return False
        manifest_storage = getattr(storage, "manifest_storage", storage)
        if listing is None or unwrap(manifest_storage) is not unwrap(storage):
            return bool(manifest_storage.exists(name))
        hashed = previous.manifests[0] if previous.manifests else []
        return name in listing and all(path in listing for path in hashed)

    def staged(self, found: FoundFiles, staging: Staging) -> list[str] | None:
        """The storage's ``post_process`` with its I/O staged; then, unless
        simulated, written out. None if a dry run could not simulate it."""
        if not staging.simulate:
            processed = self.each(staging)
            self.flush(staging)
            return processed
        storage = staging.main.storage
        # A dry run leaves the storage's in-memory manifest as it was.
        saved = {
            name: vars(storage)[name]
            for name in ("hashed_files", "manifest_hash")
            if name in vars(storage)
        }
        try:
            return self.each(staging)
        except Exception as error:
            self.report.post_processing = {
                "status": f"not simulated ({type(error).__name__}: {error})"
            }
            return None
        finally:
            vars(storage).update(saved)

    def each(self, staging: Staging) -> list[str]:
        """Run ``post_process`` and log each result as stock does."""
        progress = Progress(
            self.progress_to, "Post-processing", len(staging.found_files)
        )
        post_process: Any = getattr(self.storage, "post_process")  # noqa: B009
        processed: list[str] = []
        with staging.active():
            results = post_process(staging.paths(), dry_run=False)
            for original, processed_path, done in results:
                if isinstance(done, Exception):
                    self.fail(original, done)
                if isinstance(processed_path, str):
                    self.outputs.add(processed_path)
                    self.names.setdefault(original, processed_path)
                if done:
                    self.host.log(
                        f"Post-processed '{original}' as '{processed_path}'", level=2
                    )
                    processed.append(original)
                else:
                    self.host.log(f"Skipped post-processing '{original}'")
                progress.advance()
        if progress.files:
            progress.close()
        return processed

    def flush(self, staging: Staging) -> None:
        try:
            staging.flush()
        except FlushError as error:
            failures = sorted(error.failures, key=lambda failure: failure.path)
            for failure in failures:
                self.host.stderr.write(
                    f"Could not write '{failure.path}': {failure.reason}"
                )
            names = ", ".join(failure.path for failure in failures)
            raise CommandError(
                f"{len(failures)} post-processed file(s) could not be written: "
                f"{names}. The manifest was not updated."
            ) from None

    def fail(self, original: str, error: Exception) -> None:
        """A failure the storage yielded: reported and raised as stock does."""
        self.host.stderr.write(f"Post-processing '{original}' failed!")
        # A blank line keeps the error from hiding in the traceback above it.
        self.host.stderr.write()
        if not RAISES_COMMAND_ERROR:
            raise error
        message = str(error)
        notes = getattr(error, "__notes__", None)
        if notes is not None:
            message += "\n" + "\n".join(notes)
        raise CommandError(message) from error
