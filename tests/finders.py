"""Finders for the tests: one offers a path escaping the destination, as a
buggy one might; one is slow."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.contrib.staticfiles.finders import BaseFinder, FileSystemFinder
from django.core.files.storage import FileSystemStorage


class EscapingFinder(BaseFinder):
    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> list[str]:
        return []

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        import tempfile

        folder = tempfile.mkdtemp()
        with open(f"{folder}/escape.css", "w") as handle:
            handle.write("a{}")
        yield "../escape.css", FileSystemStorage(location=f"{folder}/inner")


class SlowFinder(FileSystemFinder):
    """STATICFILES_DIRS, listed after ``SLOW_FIND`` seconds (before the run
    takes its lease); it first creates the file ``SLOW_FIND_STARTED`` names,
    if any. With ``SLOW_OPEN``, the first source the run opens (the lease
    held by then) takes that many seconds: a run that holds its lease a while."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        delay = float(os.environ.get("SLOW_OPEN", "0"))
        first = threading.Lock()

        def slow_once(open_file: Any) -> Any:
            def opened(*args: Any, **kwargs: Any) -> Any:
                if first.acquire(blocking=False):
                    time.sleep(delay)
                return open_file(*args, **kwargs)

            return opened

        for storage in self.storages.values():
            storage.open = slow_once(storage.open)

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, Any]]:
        started = os.environ.get("SLOW_FIND_STARTED")
        if started:
            open(started, "w").close()
        time.sleep(float(os.environ.get("SLOW_FIND", "0")))
        yield from super().list(ignore_patterns)
