"""Hand the collected files to the storage's own ``post_process``, as stock does.

Remote or local, the storage's I/O is staged (see :mod:`.staging`); and when
nothing post-processing depends on has changed since the last run, it is
skipped altogether.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import django
from django.conf import settings
from django.core.files.storage import Storage
from django.core.management.base import CommandError, OutputWrapper

from . import __version__
from .progress import Progress
from .sources import Digest, hex_md5
from .staging import FlushError, Staging

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
        "files": sorted((path, hex_md5(d.md5)) for path, d in digests.items()),
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


class PostProcessor:
    """Run ``storage.post_process`` over every found file and log each result."""

    def __init__(
        self,
        storage: Storage,
        log: Callable[..., None],
        stderr: OutputWrapper,
        progress: Progress | None = None,
    ) -> None:
        self.storage = storage
        self.log = log
        self.stderr = stderr
        self.progress = progress
        self.processed: list[str] = []
        #: Names the post-processor wrote (hashed copies, for instance).
        self.outputs: set[str] = set()
        #: The last name each original was post-processed as.
        self.names: dict[str, str] = {}

    def run(self, found_files: FoundFiles, dry_run: bool) -> list[str]:
        """Post-process and return the original paths that were processed."""
        post_process: Any = getattr(self.storage, "post_process", None)
        if post_process is None:
            return self.processed
        for original, processed_path, processed in post_process(
            found_files, dry_run=dry_run
        ):
            if isinstance(processed, Exception):
                self.fail(original, processed)
            if isinstance(processed_path, str):
                self.outputs.add(processed_path)
                self.names.setdefault(original, processed_path)
            if processed:
                self.log(f"Post-processed '{original}' as '{processed_path}'", level=2)
                self.processed.append(original)
            else:
                self.log(f"Skipped post-processing '{original}'")
            if self.progress is not None:
                self.progress.advance()
        if self.progress is not None and self.progress.files:
            self.progress.close()
        return self.processed

    def run_staged(self, found_files: FoundFiles, staging: Staging) -> list[str]:
        """Post-process with the storage's I/O staged, then write it out."""
        with staging.active():
            self.run(staging.paths(), dry_run=False)
        if staging.simulate:
            return self.processed
        try:
            staging.flush()
        except FlushError as error:
            failures = sorted(error.failures, key=lambda failure: failure.path)
            for failure in failures:
                self.stderr.write(f"Could not write '{failure.path}': {failure.reason}")
            names = ", ".join(failure.path for failure in failures)
            raise CommandError(
                f"{len(failures)} post-processed file(s) could not be written: "
                f"{names}. The manifest was not updated."
            ) from None
        return self.processed

    def simulate(self, staging: Staging) -> list[str]:
        """Dry run: post-process with every write staged and none made.

        The storage's in-memory manifest is put back afterwards.
        """
        storage = staging.main.storage
        saved = {
            name: vars(storage)[name]
            for name in ("hashed_files", "manifest_hash")
            if name in vars(storage)
        }
        try:
            return self.run_staged({}, staging)
        finally:
            vars(storage).update(saved)

    def fail(self, original: str, error: Exception) -> None:
        self.stderr.write(f"Post-processing '{original}' failed!")
        # A blank line keeps the error from hiding in the traceback above it.
        self.stderr.write()
        if not RAISES_COMMAND_ERROR:
            raise error
        message = str(error)
        notes = getattr(error, "__notes__", None)
        if notes is not None:
            message += "\n" + "\n".join(notes)
        raise CommandError(message) from error
