"""``--delete``: remove destination files this collection did not produce."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.core.management.base import CommandError

from .backends import Backend
from .record import is_safe_path
from .retry import Retry

#: Derived files that post-processors write beside a kept file (WhiteNoise
#: compresses to .gz and .br without yielding those names).
DERIVED_SUFFIXES = (".gz", ".br")


class Host(Protocol):
    dry_run: bool

    def log(self, msg: str, level: int = 2) -> None: ...
    def note_deleted(self, path: str) -> None: ...


class Pruner:
    """Decides which files are stale and deletes them, in batches if it can."""

    def __init__(
        self,
        host: Host,
        backend: Backend,
        max_delete: int | None,
        retry: Retry | None = None,
    ) -> None:
        self.host = host
        self.backend = backend
        self.max_delete = max_delete
        self.retry = retry or Retry(attempts=1)

    def stale(self, existing: Iterable[str], keep: set[str]) -> list[str]:
        kept = keep | {path + suffix for path in keep for suffix in DERIVED_SUFFIXES}
        return sorted(
            path for path in existing if path not in kept and is_safe_path(path)
        )

    def run(self, existing: Iterable[str], keep: set[str]) -> list[str]:
        stale = self.stale(existing, keep)
        if self.max_delete is not None and len(stale) > self.max_delete:
            raise CommandError(
                f"--delete would remove {len(stale)} stale files, more than "
                f"--max-delete {self.max_delete}; nothing was deleted."
            )
        for path in stale:
            verb = "Pretending to delete" if self.host.dry_run else "Deleting"
            self.host.log(f"{verb} stale '{path}'", level=1)
            self.host.note_deleted(path)
        if stale and not self.host.dry_run:
            self.retry("Deleting stale files", lambda: self.backend.delete_many(stale))
        return stale
