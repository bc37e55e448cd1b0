"""Finders for the tests: one offers a path escaping the destination, as a
buggy one might; one is slow."""

from __future__ import annotations

import os
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
    """STATICFILES_DIRS, listed after ``SLOW_FIND`` seconds: a run that
    holds its lease for a while. It first creates the file
    ``SLOW_FIND_STARTED`` names, if any (the run is past taking the lease)."""

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, Any]]:
        started = os.environ.get("SLOW_FIND_STARTED")
        if started:
            open(started, "w").close()
        time.sleep(float(os.environ.get("SLOW_FIND", "0")))
        yield from super().list(ignore_patterns)
