"""Hand the collected files to the storage's own ``post_process``, as stock does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django
from django.core.files.storage import Storage
from django.core.management.base import CommandError, OutputWrapper

FoundFiles = dict[str, tuple[Storage, str]]

#: Django 6.1 turned a failed post-process into a CommandError with its notes.
RAISES_COMMAND_ERROR = django.VERSION >= (6, 1)


class PostProcessor:
    """Run ``storage.post_process`` over every found file and log each result."""

    def __init__(
        self,
        storage: Storage,
        log: Callable[..., None],
        stderr: OutputWrapper,
    ) -> None:
        self.storage = storage
        self.log = log
        self.stderr = stderr
        self.processed: list[str] = []
        #: Names the post-processor wrote (hashed copies, for instance).
        self.outputs: set[str] = set()

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
            if processed:
                self.log(f"Post-processed '{original}' as '{processed_path}'", level=2)
                self.processed.append(original)
            else:
                self.log(f"Skipped post-processing '{original}'")
        return self.processed

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
