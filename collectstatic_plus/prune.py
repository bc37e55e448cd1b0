"""``--delete``: remove what this package wrote there and the collection no
longer produces; decided before anything is written.

A destination may be shared (media files and backups in the same bucket,
with ``location=""``), so only files this package wrote are candidates: the
paths its sync record lists, what the record says post-processing wrote, and
the hashed names of its kept manifests. Any other file is "not ours" and
kept, unless ``--delete-unowned``. Without a record nothing is known to be
ours, and nothing is deleted.

:meth:`Pruner.plan` decides before the first write (so ``--max-delete``
stops a run before it copies anything, and a dry run lists every deletion);
:meth:`Pruner.delete` carries out, after a run without errors, what was
decided and is still stale then (post-processing may produce a name again).
The sync record is rewritten without what was deleted; stopped midway (an
interrupt, an error) it is rewritten as :meth:`Pruner.unclaimed`: claiming
none of what was being deleted, which is still ours where it is left.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import NamedTuple

import django
from django.core.management.base import CommandError

from .backends.base import Backend, DeleteFailed, Listing
from .options import RunOptions
from .paths import is_safe_path
from .plan import saw_same
from .record import Record
from .report import Report
from .retry import PermanentError, Retry, first_few, first_line
from .vouch import unhashed

#: Derived files that post-processors write beside a kept file (WhiteNoise
#: compresses to .gz and .br).
DERIVED_SUFFIXES = (".gz", ".br")
#: Stale names a refusal (``--max-delete``) names; the report has them all.
NAMED = 20
#: Django 6.0 moved the duplicate-path and clearing messages to -v 2.
NOTICE_LEVEL = 2 if django.VERSION >= (6, 0) else 1


class Deletions(NamedTuple):
    """What ``--delete`` will remove, and what it keeps as not ours."""

    stale: list[str]
    unowned: list[str]
    #: Why nothing is deleted at all, if so.
    reason: str = ""


class Pruner:
    """Decides which files are stale and deletes them, in batches if it can."""

    def __init__(
        self,
        backend: Backend,
        retry: Retry,
        log: Callable[..., None],
        warn: Callable[[str], None],
        options: RunOptions,
        report: Report,
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.log = log
        self.warn = warn
        self.options = options
        self.report = report

    def clear(self, clear_dir: Callable[[str], None]) -> list[str]:
        """``--clear`` (the record and lease, and a name no storage call can
        reach, left out): stock's ``clear_dir`` on local disk; elsewhere a
        listing and batched deletes (stock's ``exists("")`` breaks S3 with no
        location). Each file deleted is reported; the names returned are those
        stock's ``clear_dir`` did not count (Django 6 counts its own)."""
        listing = self.retry("Listing the destination", self.backend.listing)
        ours = {self.backend.listed_name(name) for name in self.options.own_files}
        names = sorted(n for n in listing or () if n not in ours and is_safe_path(n))
        counted = []
        if listing is None or self.backend.local:
            clear_dir("")
        else:
            if odd := sorted(n for n in listing if not is_safe_path(n)):
                self.warn(
                    f"--clear left {first_few(odd, 3)}: no storage call names it."
                )
            for name in names:
                verb = "Pretending to delete" if self.options.dry_run else "Deleting"
                self.log(f"{verb} '{name}'", level=NOTICE_LEVEL)
            if names and not self.options.dry_run:
                self.delete_all("Clearing the destination", names)
            counted = names
        for name in names:  # (none if there is no listing)
            self.report.other(name, "deleted", size=(listing or {})[name].size)
        return counted

    def plan(
        self,
        listing: Listing | None,
        previous: Record | None,
        keep: set[str],
    ) -> Deletions:
        """What is stale among what the destination holds: ours and not
        kept; and what is not ours."""
        if previous is None:
            reason = "no sync record yet: nothing here is known to be ours"
            return Deletions([], [], reason)
        owned = self.owned(previous)
        kept = kept_with_derived(keep)
        stale: list[str] = []
        unowned: list[str] = []
        for name in sorted(self.candidates(listing, previous)):
            if name in kept or not is_safe_path(name):
                continue
            ours = name in owned and not self.written_over(name, previous, listing)
            (stale if ours else unowned).append(name)
        if self.options.delete_unowned:
            stale, unowned = sorted(stale + unowned), []
        return Deletions(stale, unowned)

    def check_limit(self, stale: list[str]) -> str:
        """A CommandError (before anything is written) when more than
        ``--max-delete`` are stale, naming the first 20; a dry run says so
        and goes on (the reason returned: "" if within the limit)."""
        limit = self.options.max_delete
        if limit is None or len(stale) <= limit:
            return ""
        over = f"more than --max-delete {limit}"
        said = f"--delete would remove {len(stale)} stale files, {over}"
        if self.options.dry_run:
            self.warn(f"{said}: a real run stops there, writing nothing.")
            reason = f"a real run stops: {over}"
            self.report.deletions["reason"] = reason
            return reason
        self.report.deletions["reason"] = over
        raise CommandError(
            f"{said}; nothing was written or deleted: {first_few(stale, NAMED)}."
        )

    def written_over(
        self, name: str, previous: Record, listing: Listing | None
    ) -> bool:
        """Whether a file the record lists now holds other bytes than this
        package wrote: the listing shows it changed since, and its MD5 (or,
        on local disk, its content) is not the recorded one."""
        entry = previous.files.get(name)
        remote = None if listing is None else listing.get(name)
        if entry is None or remote is None:
            return False
        if entry.seen is not None and saw_same(entry, remote):
            return False
        if remote.md5 is not None:
            return remote.md5 != entry.md5
        return not (self.backend.local and self.backend.digest(name) == entry.digest)

    @staticmethod
    def candidates(listing: Listing | None, previous: Record | None) -> Collection[str]:
        """What the destination may hold: its listing, or, for a storage that
        cannot list, what the record says is there."""
        if listing is not None:
            return listing.keys()
        if previous is None:
            return set()
        return Pruner.owned(previous)

    @staticmethod
    def owned(previous: Record) -> set[str]:
        """Every name the sync record says this package wrote."""
        return set(previous.files) | Pruner.made(previous)

    @staticmethod
    def made(record: Record) -> set[str]:
        """What the record says post-processing wrote: outputs, hashed names,
        the kept manifests' files and the retired ones."""
        made = set(record.retired).union(*record.manifests)
        for row in record.processed.values():
            made.update(row.outputs)
            if row.hashed:
                made.add(row.hashed)
        return made

    @staticmethod
    def retired(
        previous: Record | None,
        new: Record,
        listing: Listing | None,
        left: Iterable[str] = (),
    ) -> list[str]:
        """What ``new`` must keep as ours though it names it nowhere else:
        what ``previous`` did name (the outputs of files changed since, the
        files of manifests dropped: a run without ``--delete`` leaves them),
        while the destination holds it, and what a failed post-process
        ``left`` there."""
        names = set(left)
        if previous is not None:
            # With the same post-process and manifests, only the retired carry
            # over (no sets of every output at 50,000 files on a no-change run).
            same = (new.processed, new.manifests) == (
                previous.processed,
                previous.manifests,
            )
            made = previous.retired if same else Pruner.made(previous)
            names.update(n for n in made if listing is None or n in listing)
        if not names:
            return []
        named = Pruner.made(new)
        return sorted(n for n in names if n not in named and n not in new.files)

    def delete(
        self, decided: Deletions, keep: set[str]
    ) -> tuple[list[str], CommandError | None]:
        """Delete what was decided and is still not kept (post-processing may
        have written a name again), and report it; the names are logged once
        the deletions are done. The deleted, and the error if some were not."""
        kept = kept_with_derived(keep)
        # Said now: what a failed run's post-process left is this one's output.
        unowned = [name for name in decided.unowned if name not in kept]
        self.report.deletions["unowned"] = unowned
        if unowned:
            self.warn(
                f"{len(unowned)} file(s) not written by collectstatic-plus kept "
                f"(first: {', '.join(unowned[:3])}); --delete-unowned deletes "
                "them too."
            )
        names = self.doomed(decided, keep)
        self.report.deletions["stale"] = names
        failed = None
        for name in names if self.options.dry_run else ():
            self.log(f"Would delete {name}", level=1)
        if names and not self.options.dry_run:
            try:
                self.delete_all("Deleting stale files", names)
            except CommandError as error:
                if not isinstance(error.__cause__, DeleteFailed):
                    raise
                left = {name for name, _why in error.__cause__.failures}
                names, failed = [n for n in names if n not in left], error
            for name in names:
                self.log(f"Deleting stale '{name}'", level=1)
        return names, failed

    @staticmethod
    def doomed(decided: Deletions, keep: set[str]) -> list[str]:
        """What :meth:`delete` deletes: the stale still not kept."""
        kept = kept_with_derived(keep)
        return [name for name in decided.stale if name not in kept]

    @staticmethod
    def unclaimed(record: Record, names: Collection[str]) -> Record:
        """``record`` claiming none of ``names``, which a run stopped while it
        deleted them (any may be gone); those it listed stay ours while they
        are there (retired), for a later --delete."""
        gone = {name for name in names if name in record.files}
        if not gone:
            return record
        files = {path: e for path, e in record.files.items() if path not in gone}
        retired = sorted(gone.union(record.retired))
        return replace(record, files=files, retired=retired)

    def delete_all(self, what: str, names: list[str]) -> None:
        """Delete ``names`` (in batches where the backend can); what could
        not be deleted ends the run in one line, once every file was tried."""
        try:
            self.retry(what, lambda: self.backend.delete_many(names))
        except PermanentError:
            raise  # its own one line (the command's)
        except DeleteFailed as error:  # (the others were deleted)
            raise CommandError(
                f"{what}: {len(error.failures)} of {len(names)} files could "
                f"not be deleted: {error.named}."
            ) from error
        except Exception as error:
            raise CommandError(f"{what}: {first_line(error).rstrip('.')}.") from error


def kept_with_derived(keep: set[str]) -> set[str]:
    """``keep`` and the .gz/.br post-processors write beside each."""
    return keep | {name + suffix for name in keep for suffix in DERIVED_SUFFIXES}


def keep_set(
    protected: Collection[str],
    outputs: Collection[str],
    manifests: list[list[str]],
    listed: Iterable[str],
) -> set[str]:
    """What ``--delete`` never removes: every collected file, the sync record
    and the manifest (``protected``), what post-processing wrote for the
    current files and what they were made from (``outputs``), and the files
    named by the kept manifests; of the ``listed`` names, the hashed copies
    of a file no longer collected that a current one refers to (it names one
    of them)."""
    keep = {*protected, *outputs}
    for paths in manifests:
        keep.update(paths)
    gone = {
        name
        for name in outputs
        if name not in protected
        and not name.endswith(DERIVED_SUFFIXES)
        and unhashed(name) is None
    }
    if gone:
        keep.update(name for name in listed if unhashed(name) in gone)
    return keep


def predicted_outputs(
    previous: Record | None, digests: Mapping[str, str | None]
) -> tuple[set[str], list[str]]:
    """Before post-processing: the outputs, what they were made from and the
    hashed names of the files that have not changed (a file whose digest is
    not known yet counts as unchanged), which post-processing will keep."""
    outputs: set[str] = set()
    names: list[str] = []
    rows = previous.processed if previous is not None else {}
    for path, md5 in digests.items():
        row = rows.get(path)
        if row is None or (md5 is not None and md5 != row.md5):
            continue
        outputs.update(row.outputs)
        outputs.update(row.refs)  # (a removed source a file still refers to)
        if row.hashed:
            names.append(row.hashed)
    return outputs, names
