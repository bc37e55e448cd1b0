"""One collectstatic run, in order: the only module that knows the steps.

find sources -> (the lease) clear -> read the destination (listing and sync
record) -> hash what must be hashed -> decide and copy on the pool ->
post-process -> write the sync record -> prune.

Nothing after a failed step writes to the destination, except the sync
record, which then lists only what landed. The run returns what happened in
stock's terms (:class:`Outcome`); the command prints it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.files.storage import Storage
from django.core.management.base import CommandError

from .backends import backend_for
from .backends.base import Listing
from .digest import digest_file
from .lease import Lease
from .options import RunOptions
from .plan import Action, Knowledge, decide, needs_digest, recorded_digest
from .pool import Failed, Failure, TransferPool, interrupts_end_the_command
from .postprocess import PostProcessing
from .progress import Host, Progress, Terminal
from .prune import NOTICE_LEVEL, Deletions, Pruner, keep_set, predicted_outputs
from .record import Record
from .recorder import recorder_for
from .report import Report
from .retry import PermanentError, Retry, Throttle, Unreachable, first_line
from .sources import Source, duplicate_message, find_sources, keyed_by_sources, own_path
from .transfer import Copier

if TYPE_CHECKING:
    from .minify import SourceMinifier


@dataclass
class Outcome:
    """What a run did, as stock's lists (see the command's ``collected``)."""

    copied: list[str] = field(default_factory=list)
    unmodified: list[str] = field(default_factory=list)
    post_processed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Later files for a path already found (not collected).
    skipped: list[str] = field(default_factory=list)


class Run:
    def __init__(
        self,
        storage: Storage,
        options: RunOptions,
        host: Host,
        report: Report,
        terminal: Terminal | None = None,
    ) -> None:
        self.storage = storage
        self.options = options
        self.host = host
        self.report = report
        self.terminal = terminal
        self.backend = backend = backend_for(storage)
        self.retry = Retry(
            options.retries,
            options.retry_budget,
            throttle=Throttle(options.workers),
            errors=backend,
        )
        if terminal is not None:
            terminal.retries = lambda: self.retry.retried
        self.minifying: SourceMinifier | None = None
        if options.minify.enabled:
            try:
                from .minify import SourceMinifier  # here: rcssmin, rjsmin
            except ImportError as error:
                raise CommandError(
                    f"--minify needs rcssmin and rjsmin: {error}"
                ) from error
            self.minifying = SourceMinifier(options.minify, report, self.warn, storage)
        self.recorder = recorder_for(options, backend, self.retry, self.warn)
        self.lease = Lease.beside(self.recorder.backend, options, self.warn)
        if not options.dry_run:
            self.recorder.fence = self.lease.check
            self.retry.fence = self.lease.guard  # no write after the lease is lost
        self.copier = Copier(
            storage,
            backend,
            self.retry,
            report,
            host.log,
            host.delete_file,
            options.dry_run,
        )
        self.outcome = Outcome()
        #: Every file the finders offered, in their order (duplicates too),
        #: and the one collected for each destination path.
        self.found: list[Source] = []
        self.sources: dict[str, Source] = {}
        #: What the destination holds, before this run writes anything.
        self.listing: Listing | None = None
        self.previous: Record | None = None
        self.post_processing = PostProcessing(
            storage, backend, self.retry, report, host, options, terminal
        )
        self.pruner = Pruner(backend, self.retry, host.log, self.warn, options, report)
        #: Sources that could not be read to decide: failed after the others.
        self.unread: list[Failure] = []
        self.deletions = Deletions([], [])

    def run(self) -> Outcome:
        phase, options = self.report.phase, self.options
        with interrupts_end_the_command(), phase("find"):
            self.find()  # before the lease and --clear: it may refuse the run
        with (
            interrupts_end_the_command(),  # (the lease given back first)
            self.backend.prepared_for_threads(options.workers),
            self.backend.counting(self.report.count_request),
            contextlib.nullcontext() if options.dry_run else self.lease,
        ):
            if options.clear:
                with phase("clear"):
                    if not options.dry_run:
                        self.recorder.forget()  # first, silently
                    self.outcome.deleted += self.pruner.clear(self.host.clear_dir)
            with phase("read destination"):
                self.learn()
            consumed: dict[str, str] = {}
            if options.post_process and not options.clear:
                consumed = self.post_processing.consumes(self.previous)
            known = Knowledge(
                self.listing,
                self.previous,
                self.backend.local,
                options.force,
                options.verify,
                consumed,
            )
            with phase("hash"):
                self.hash(known)
            if options.delete:
                self.plan_deletions()
            with phase("transfer"), self.backend.saving(), self.copier.watching():
                self.transfer(known)
            if options.post_process:
                with phase("post-process"):
                    try:
                        self.post_process()
                    except BaseException:
                        self.save_partial_record()  # what the copy landed
                        raise
            if not options.dry_run:
                with phase("record"):
                    record = self.save_record(complete=True)
            if options.delete:
                failed = self.prune(None if options.dry_run else record)
                if failed:
                    raise failed
        return self.outcome

    def find(self) -> None:
        """The sources in finder order; later files for a path are duplicates."""
        for source in find_sources(self.options.ignore_patterns):
            path = source.prefixed_path
            winner = self.sources.get(path)
            if winner is not None:
                self.report.other(
                    path,
                    "conflict",
                    source=source.origin,
                    reason=f"{winner.origin} won",
                )
            else:
                if self.minifying is not None:
                    source = self.minifying.wrap(source)
                self.sources[path] = source
            self.found.append(source)
        manifest = getattr(self.storage, "manifest_name", None)
        self.options.check_own_names(self.sources, manifest, self.backend)

    def learn(self) -> None:
        """The sync record, and a listing if the backend lists (none after --clear)."""
        if self.options.clear:
            self.listing = {}
            return
        refused: PermanentError | None = None
        try:
            # Each path held once: the sources' own strings (sources.py).
            self.previous = self.recorder.load(own_path(self.sources))
        except PermanentError as error:  # the listing's own error comes first
            refused = error
        try:
            with Progress(self.terminal, "Listing", None) as shown:
                listing = self.retry("Listing the destination", self.backend.listing)
                if listing is not None:  # each path held once (sources.py)
                    named = self.backend.listed_name
                    self.listing = keyed_by_sources(listing, self.sources, named)
                shown.advance(len(self.listing or ()))
        except PermanentError as error:
            raise CommandError(str(error)) from error
        except Exception as error:
            raise CommandError(
                f"Could not list the destination: {first_line(error)}"
            ) from error
        if refused is not None:
            raise CommandError(str(refused)) from refused

    def hash(self, known: Knowledge) -> None:
        """Each source's content where deciding needs it: the record's if the
        file was not touched since, else read on the pool."""
        unread: list[Source] = []
        for path, source in self.sources.items():
            if needs_digest(path, known):
                source.digest = recorded_digest(source, known)
                if source.digest is None:
                    unread.append(source)
        progress = Progress(self.terminal, "Hashing", len(unread))

        def read(source: Source) -> None:
            try:
                source.digest = digest_file(source.storage, source.path)
            except Exception:
                progress.failed()
                raise
            progress.advance(1, source.digest.size)

        with progress, TransferPool(self.options.workers, done="read") as pool:
            for source in unread:
                pool.submit(source.prefixed_path, read, source)
        self.unread = pool.failures

    def transfer(self, known: Knowledge) -> None:
        """Decide each file in finder order, and copy on the pool."""
        copier, outcome = self.copier, self.outcome
        copier.claim(self.sources, self.listing)  # (sources sharing a stored name)
        unread = {failure.path for failure in self.unread}
        # Bytes are shown only if every size is known (not on a cold run).
        digests = [source.digest for source in self.sources.values()]
        size = sum(d.size for d in digests if d) if all(digests) else 0
        progress = Progress(self.terminal, "Collecting", len(self.sources), size)

        def copy(source: Source, decision: object) -> None:
            try:
                copier.run(source, decision)  # type: ignore[arg-type]
            except Exception:
                progress.failed()
                raise
            progress.advance(1, source.digest.size if source.digest else 0)

        try:
            done = "checked" if self.options.dry_run else "collected"
            pool = TransferPool(self.options.workers, self.save_partial_record, done)
            with progress, pool:
                for source in self.found:
                    path = source.prefixed_path
                    if self.sources[path] is not source:
                        outcome.skipped.append(path)
                        self.host.log(duplicate_message(path), level=NOTICE_LEVEL)
                        continue
                    if path in unread:
                        continue
                    decision = decide(path, source.digest, known)
                    if decision.action is Action.SKIP:
                        copier.skip(source)  # no I/O: not worth a thread
                        progress.advance(1, source.digest.size if source.digest else 0)
                    else:
                        pool.submit(path, copy, source, decision)
        except PermanentError as error:
            self.save_partial_record()
            left = len(self.sources) - len(copier.written) - len(copier.kept)
            message = (
                f"{error}; {left} of {len(self.sources)} files were not collected."
            )
            if isinstance(error, Unreachable):
                message += " Run collectstatic again once it answers."
            raise CommandError(message) from error
        outcome.copied += copier.copied
        outcome.unmodified += copier.unmodified
        if failures := [*self.unread, *pool.failures]:
            self.save_partial_record()
            for failure in failures:
                self.report.error(failure.path, failure.reason)
            raise Failed(failures)

    def post_process(self) -> None:
        """Post-process (see postprocess.py); a copy it wrote over is listed again."""
        copied, post_processing = set(self.copier.copied), self.post_processing
        done = post_processing.run(self.sources, self.listing, self.previous, copied)
        self.outcome.post_processed = done
        for name in copied.intersection(self.report.post_processing.get("written", ())):
            self.copier.written[name] = None  # (a shipped a.js.gz WhiteNoise replaced)

    def save_partial_record(self) -> None:
        """After a failure or an interrupt: record what landed, and only that."""
        if not self.options.dry_run:
            self.save_record(complete=False)

    def save_record(self, complete: bool) -> Record:
        """The next sync record, with what the last complete post-process did."""
        previous, done = self.previous, self.post_processing
        manifests = previous.manifests if previous is not None else []
        manifest = done.manifest
        if complete and manifest is not None and manifests[:1] != [manifest]:
            manifests = [manifest, *manifests][: self.options.keep_manifests]
        state, processed = {}, {}
        if complete and done.processed is not None:
            state, processed = done.state, done.processed
        elif previous is not None:
            state, processed = previous.state, previous.processed
        new = self.recorder.next(
            self.sources,
            previous,
            self.listing,
            self.copier.written,
            self.copier.kept,
            manifests,
            state,
            processed,
            done.consumed,
        )
        new.retired = Pruner.retired(previous, new, self.listing, done.left)
        self.recorder.save(new, previous, complete)
        return new

    def plan_deletions(self) -> None:
        """``--delete``, decided before anything is written (see prune.py)."""
        digests = {
            path: None if s.digest is None else s.digest.md5
            for path, s in self.sources.items()
        }
        last = self.post_processing.last(self.previous)
        outputs, current = predicted_outputs(last, digests)
        keep = self.keep(outputs, current if self.options.post_process else None)
        self.deletions = deletions = self.pruner.plan(self.listing, self.previous, keep)
        self.report.deletions = {"stale": deletions.stale, "unowned": deletions.unowned}
        # (Until the deletions run: a run that fails first deletes nothing.)
        reason = deletions.reason or "not run: an error or an interrupt came first"
        self.report.deletions["reason"] = reason
        if over := self.pruner.check_limit(deletions.stale):  # (a dry run's)
            self.deletions = deletions._replace(reason=over)

    def keep(self, outputs: set[str], current: list[str] | None) -> set[str]:
        """What --delete never removes; ``current``: the names of the manifest
        this run writes (None: it writes none, the last one stays published)."""
        previous, options = self.previous, self.options
        # (Ours as a listing names them: a storage may save under another name.)
        own = map(self.backend.listed_name, options.own_files)
        protected = {*self.sources, *own, *self.copier.renamed}
        manifest_name = getattr(self.storage, "manifest_name", None)
        if isinstance(manifest_name, str):
            protected.add(manifest_name)
        history = previous.manifests if previous is not None else []
        manifests = history  # a manifest like the published one is not new
        if current is not None and (not history or set(current) != set(history[0])):
            manifests = [current, *history]
        listed = Pruner.candidates(self.listing, previous)
        return keep_set(protected, outputs, manifests[: options.keep_manifests], listed)

    def prune(self, record: Record | None) -> CommandError | None:
        """``--delete``: what was decided and is still stale; then ``record``
        (None in a dry run) without the deleted. The error if some could not
        be. Stopped (an interrupt, an error) as it deletes or rewrites the
        record, the record then claims none of what it was deleting."""
        phase = self.report.phase
        with phase("delete"):
            if not self.options.dry_run:  # held (there may have been no record)
                self.lease.check()
            if not self.deletions.reason:
                del self.report.deletions["reason"]
            done, stale = self.post_processing, len(self.deletions.stale)
            keep = self.keep(done.outputs, done.manifest)
        deleted: list[str] = []
        try:
            with phase("delete"), Progress(self.terminal, "Deleting", stale) as shown:
                deleted, failed = self.pruner.delete(self.deletions, keep)
                shown.advance(len(deleted))
            for path in deleted:
                remote = None if self.listing is None else self.listing.get(path)
                self.report.other(path, "deleted", size=remote.size if remote else None)
                self.outcome.deleted.append(path)
            if deleted and record is not None:  # (written before: all ours)
                with phase("record"):
                    self.recorder.save(record.without(deleted), record, not failed)
        except BaseException as error:  # (a failed rewrite has said why)
            if record is not None and (
                not deleted or isinstance(error, KeyboardInterrupt)
            ):
                gone = deleted or self.pruner.doomed(self.deletions, keep)
                self.recorder.save(Pruner.unclaimed(record, gone), record, False)
            raise
        return failed

    def warn(self, message: str) -> None:
        if self.host.verbosity >= 1:
            self.host.stderr.write(message)
