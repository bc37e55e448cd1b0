"""Find the source files to collect, in the order stock collectstatic does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.staticfiles.finders import get_finders
from django.core.files.storage import Storage


@dataclass(frozen=True)
class Source:
    """One file a finder offers: its path in ``storage`` and its destination path."""

    path: str
    prefixed_path: str
    storage: Storage


def find_sources(ignore_patterns: list[str]) -> Iterator[Source]:
    """Yield every file each finder lists, duplicates included, finders in order.

    The first file offered for a destination path is the one collected; the
    caller decides what to do with later ones, as stock does.
    """
    for finder in get_finders():
        for path, storage in finder.list(ignore_patterns):
            prefix = getattr(storage, "prefix", None)
            prefixed_path = os.path.join(prefix, path) if prefix else path
            yield Source(path, prefixed_path, storage)
