"""``--delete``: remove destination files this collection did not produce."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.core.management.base import CommandError

from .backends.base import Backend
from .options import RunOptions
from .paths import is_safe_path
from .retry import Retry

#: Derived files that post-processors write beside a kept file (WhiteNoise
#: compresses to .gz and .br without yielding those names).
DERIVED_SUFFIXES = (".gz", ".br")


class Pruner:
    """Decides which files are stale and deletes them, in batches if it can."""

    def __init__(
        self,
        backend: Backend,
        retry: Retry,
        log: Callable[..., None],
        options: RunOptions,
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.log = log
        self.dry_run = options.dry_run
        self.max_delete = options.max_delete

    def stale(self, existing: Iterable[str], keep: set[str]) -> list[str]:
        kept = keep | {path + suffix for path in keep for suffix in DERIVED_SUFFIXES}
        return sorted(
            path for path in existing if path not in kept and is_safe_path(path)
        )

    def run(self, existing: Iterable[str], keep: set[str]) -> list[str]:
        """Delete (or, dry, pretend to) what is stale; the names."""
        stale = self.stale(existing, keep)
        if self.max_delete is not None and len(stale) > self.max_delete:
            raise CommandError(
                f"--delete would remove {len(stale)} stale files, more than "
                f"--max-delete {self.max_delete}; nothing was deleted."
            )
        for path in stale:
            verb = "Pretending to delete" if self.dry_run else "Deleting"
            self.log(f"{verb} stale '{path}'", level=1)
        if stale and not self.dry_run:
            self.retry("Deleting stale files", lambda: self.backend.delete_many(stale))
        return stale
