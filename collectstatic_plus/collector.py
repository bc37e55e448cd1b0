"""One collectstatic run, step by step.

find sources -> hash them -> learn what the destination holds -> decide per
file -> copy on the pool -> post-process -> write the sync record -> prune.

The command owns options, messages and counters (stock's hooks); this module
owns the order of the steps and what happens when one of them fails: nothing
after a failed step writes to the destination, except the sync record, which
then lists only what landed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TextIO

from django.core.files.storage import Storage
from django.core.management.base import CommandError, OutputWrapper

from .backends import Backend, Listing, Remote, backend_for
from .copier import Copier
from .minify import Minifier, MinifyingSource, MinifySettings, Outcome
from .onsources import Listed
from .plan import Action, Decision, Knowledge, decide, needs_digest
from .postprocess import FoundFiles, PostProcessor, inputs_key
from .progress import Progress
from .prune import Pruner
from .record import Record
from .recorder import Recorder
from .report import Report
from .retry import PermanentError, Retry, Throttle
from .sources import Root, Source, State, digest, find_sources, mixed
from .staging import Staging, unwrap
from .transfer import Failure, TransferPool

#: Allocations between two young collections of the cyclic GC during a run
#: (Python's default is 700, for programs that make cycles as they go).
YOUNG_COLLECTION = 20_000
#: Failed paths named in the final error message; stderr lists all of them.
NAMED_FAILURES = 10


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    force: bool = False
    verify: bool = False
    delete: bool = False
    max_delete: int | None = None
    keep_manifests: int = 3
    record_name: str = ".collectstatic-plus.json"
    minify: MinifySettings = field(default_factory=MinifySettings)
    retries: int = 4
    retry_budget: float = 60.0


class Host(Protocol):
    """The stock command's state and hooks that a run uses."""

    storage: Storage
    stderr: OutputWrapper
    verbosity: int
    dry_run: bool
    symlink: bool
    clear: bool
    post_process: bool
    ignore_patterns: list[str]
    copied_files: list[str]
    unmodified_files: list[str]
    post_processed_files: list[str]

    def log(self, msg: str, level: int = 2) -> None: ...
    def clear_dir(self, path: str) -> None: ...
    def copy_file(self, path: str, prefixed_path: str, source: Storage) -> None: ...
    def link_file(self, path: str, prefixed_path: str, source: Storage) -> None: ...
    def delete_file(self, path: str, prefixed_path: str, source: Storage) -> bool: ...
    def skip_duplicate(self, prefixed_path: str) -> None: ...
    def note_deleted(self, path: str) -> None: ...


@dataclass(frozen=True)
class Duplicate:
    """A later file for a path already found: reported, not collected."""

    source: Source


class Collector:
    def __init__(
        self,
        host: Host,
        options: RunOptions,
        report: Report,
        progress_to: TextIO | None = None,
    ) -> None:
        self.host = host
        self.options = options
        self.report = report
        #: Where live progress goes (an interactive stderr), or None.
        self.progress_to = progress_to
        self.backend: Backend = backend_for(host.storage)
        self.minifier = Minifier(options.minify)
        self.retry = Retry(
            options.retries, options.retry_budget, throttle=Throttle(options.workers)
        )
        self.warned: set[str] = set()
        #: The file collected for each destination path, in finder order.
        self.sources: dict[str, Source] = {}
        #: Later files for a collected path, after how many sources each came.
        self.duplicates: list[tuple[int, Duplicate]] = []
        self.recorder = Recorder(
            self.backend, self.retry, self.sources, options.record_name, self.warn
        )
        self.previous: Record | None = None
        self.outputs: set[str] = set()
        self.manifest: list[str] | None = None
        self.post_process_key: str | None = None

    def run(self) -> None:
        host, phase = self.host, self.report.phase
        backend = self.backend
        with (
            backend.prepared_for_threads(self.options.workers),
            backend.counting(self.report.count_request),
        ):
            if host.clear:
                with phase("clear"):
                    host.clear_dir("")
            with phase("find"):
                self.discover()
            if host.symlink:
                with phase("transfer"):
                    self.run_stock(self.in_order(), host.link_file)
            else:
                self.sync(self.in_order())
            if host.post_process:
                with phase("post-process"):
                    try:
                        self.post_process()
                    except KeyboardInterrupt:
                        raise CommandError(
                            "Interrupted during post-processing; the previous "
                            "manifest is still in place. Run collectstatic again "
                            "to finish.",
                            returncode=130,
                        ) from None
            if not host.dry_run and not host.symlink:
                with phase("record"):
                    self.save_record(complete=True)
            if self.options.delete:
                with phase("delete"):
                    self.prune()

    def discover(self) -> None:
        """Find the sources (in finder order), and later files for the same
        path, each with how many sources came before it."""
        minify = self.minifier.settings.enabled
        for found in find_sources(self.host.ignore_patterns):
            path = found.prefixed_path
            if path in self.sources:
                winner = self.sources[path].origin
                self.report.other(
                    path, "conflict", source=found.origin, reason=f"{winner} won"
                )
                self.duplicates.append((len(self.sources), Duplicate(found)))
                continue
            source = self.minifying(found) if minify else found
            self.sources[path] = source

    def in_order(self) -> Iterator[Source | Duplicate]:
        """The sources and the duplicates in the order the finders gave them
        (not kept as one list: that is 9 bytes a file)."""
        duplicates = iter(self.duplicates)
        after, duplicate = next(duplicates, (-1, None))
        for count, source in enumerate(self.sources.values()):
            while after == count and duplicate is not None:
                yield duplicate
                after, duplicate = next(duplicates, (-1, None))
            yield source
        while duplicate is not None:
            yield duplicate
            after, duplicate = next(duplicates, (-1, None))

    def minifying(self, source: Source) -> Source:
        """The source as it is to be written: minified if it should be."""
        if not self.minifier.applies_to(source.prefixed_path):
            return source
        storage = MinifyingSource(
            source.storage, source.prefixed_path, self.minifier, self.note_minified
        )
        token = source.token
        if token is not None:
            token = mixed(token, self.minifier.key)
        root = Root(storage, source.origin)  # type: ignore[arg-type]
        return replace(source, root=root, token=token)

    def note_minified(self, path: str, outcome: Outcome) -> None:
        trouble = outcome.reason == "not UTF-8" or outcome.reason.startswith(
            "minifier error"
        )
        if trouble and path not in self.warned:
            self.warned.add(path)
            self.warn(f"Not minified '{path}' ({outcome.reason}); copied as it is.")
        self.report.file(
            path,
            self.report.files[path].action if path in self.report.files else "new",
            minify={
                "minified": outcome.minified,
                "before": outcome.before,
                "after": outcome.after,
                **({"reason": outcome.reason} if outcome.reason else {}),
            },
        )

    def run_stock(
        self, order: Iterable[Source | Duplicate], handler: Callable[..., Any]
    ) -> None:
        """Stock's own per-file handler on the pool (used for ``--link``)."""
        with self.pool() as pool:
            for item in order:
                if isinstance(item, Duplicate):
                    self.host.skip_duplicate(item.source.prefixed_path)
                else:
                    pool.submit(
                        item.prefixed_path,
                        handler,
                        item.path,
                        item.prefixed_path,
                        item.storage,
                    )
        self.raise_failures(pool)

    def sync(self, order: Iterable[Source | Duplicate]) -> None:
        with self.report.phase("read destination"):
            self.knowledge = knowledge = self.learn()
        with self.report.phase("hash"):
            self.hash_sources(knowledge)
        self.copier = copier = Copier(self.host, self.backend, self.report, self.retry)
        with self.report.phase("transfer"), self.backend.saving():
            self.transfer(order, knowledge, copier)

    def transfer(
        self, order: Iterable[Source | Duplicate], knowledge: Knowledge, copier: Copier
    ) -> None:
        options = self.options
        progress = Progress(self.progress_to, "Collecting", len(self.sources))

        def copy_one(item: Source, decision: Decision) -> None:
            copier.run(item, item.content, decision)
            done = item.content
            progress.advance(1, done.size if done else 0)

        try:
            with self.pool(on_interrupt=self.save_partial_record) as pool:
                for item in order:
                    if isinstance(item, Duplicate):
                        self.host.skip_duplicate(item.source.prefixed_path)
                        continue
                    path, digest = item.prefixed_path, item.content
                    decision = decide(
                        path,
                        digest,
                        item.recorded,
                        knowledge,
                        options.force,
                        options.verify,
                    )
                    if decision.action is Action.SKIP and digest is not None:
                        copier.skip(item, digest)  # no I/O: not worth a thread
                        progress.advance()
                    else:
                        pool.submit(path, copy_one, item, decision)
        except PermanentError as error:
            self.save_partial_record()
            raise CommandError(str(error)) from error
        progress.close()
        if pool.failures:
            self.save_partial_record()
        self.raise_failures(pool)

    def hash_sources(self, known: Knowledge) -> None:
        """Each source's content, where deciding needs it; a file is read
        again only if touched since the record saw it.

        Stat calls run inline; only the reads go to the pool.
        """
        force = self.options.force
        reread = force or self.options.verify

        def read(source: Source) -> None:
            source.content = digest(source)

        with self.pool() as pool:
            for source in self.sources.values():
                path, token = source.prefixed_path, source.token
                if not needs_digest(path, known, force):
                    continue
                entry = None if reread else source.recorded
                if token is not None and entry is not None and entry.source == token:
                    source.token = entry.source  # one int for both, not two
                    source.content = entry  # its content: no Digest of its own
                else:
                    pool.submit(path, read, source)
        self.raise_failures(pool, verb="read")

    def learn(self) -> Knowledge:
        """What the destination holds: a listing if the backend can, the record."""
        cheap = self.backend.local
        if self.host.clear:
            return Knowledge(listing={}, record=None, cheap_reads=cheap)
        # The record first, so that the listing can share its objects.
        refused: PermanentError | None = None
        try:
            self.previous = self.load_record()
        except PermanentError as error:  # the listing's own error comes first
            refused = error
        try:
            listing = self.retry("Listing the destination", self.listing)
        except PermanentError as error:
            raise CommandError(str(error)) from error
        except Exception as error:
            raise CommandError(
                f"Could not list the destination: {type(error).__name__}: {error}"
            ) from error
        if refused is not None:
            raise CommandError(str(refused)) from refused
        return Knowledge(listing, self.previous, cheap_reads=cheap)

    def load_record(self) -> Record | None:
        return self.recorder.load()

    def listing(self) -> Listing | None:
        """The destination's listing, each collected path's held on its source."""
        listed = Listed(self.sources)
        listed.clear()  # from an attempt that failed half-way
        found = self.backend.listing(self.kept_listed)
        if found is None:
            return None
        listed.others = found
        return listed

    def kept_listed(self, path: str, remote: Remote) -> tuple[str, Remote] | None:
        """A collected path's listing entry goes on its source (as the record's
        object, if equal); any other path's into the listing's own dict."""
        source = self.sources.get(path)
        if source is None:
            return path, remote
        entry = source.recorded
        if entry is not None and entry.seen == remote:
            remote = entry.seen
        source.listed = remote
        return None

    def found_files(self) -> FoundFiles:
        """What stock's ``post_process`` is given: path -> (storage, path)."""
        return {path: (s.storage, s.path) for path, s in self.sources.items()}

    def post_process(self) -> None:
        host, storage, report = self.host, self.host.storage, self.report
        progress = Progress(self.progress_to, "Post-processing", len(self.sources))
        processor = PostProcessor(storage, host.log, host.stderr, progress)
        if not hasattr(storage, "post_process"):
            return
        if host.symlink:
            host.post_processed_files = processor.run(self.found_files(), host.dry_run)
            report.post_processing = {"status": "ran"}
            return
        contents = {
            path: source.content
            for path, source in self.sources.items()
            if source.state is not State.PENDING and source.content is not None
        }
        key = inputs_key(storage, contents)
        if self.post_processing_current(key):
            self.post_process_key = key
            report.post_processing = {"status": "up to date"}
            host.log("Post-processing up to date.", level=1)
            return
        found = self.found_files()
        staging = Staging(
            storage,
            self.backend,
            found,
            self.knowledge.listing,
            self.options.workers,
            simulate=host.dry_run,
            retry=self.retry,
        )
        if host.dry_run:
            try:
                host.post_processed_files = processor.simulate(staging)
            except Exception as error:
                report.post_processing = {
                    "status": f"not simulated ({type(error).__name__}: {error})"
                }
                return
        else:
            host.post_processed_files = processor.run_staged(found, staging)
            self.post_process_key = key
            hashed = getattr(storage, "hashed_files", None)
            if isinstance(hashed, dict):
                self.manifest = sorted(set(hashed.values()))
        self.outputs = processor.outputs
        report.post_processing = staging.outcome()
        for original, hashed_name in processor.names.items():
            if original in report.files:
                report.file(
                    original, report.files[original].action, hashed_name=hashed_name
                )

    def post_processing_current(self, key: str) -> bool:
        """Same inputs as the last full post-process, and its output is there.

        Not if this run wrote any file: a post-processor may have removed
        what it wrote last time (WHITENOISE_KEEP_ONLY_HASHED_FILES does).
        """
        previous, storage = self.previous, self.host.storage
        name = getattr(storage, "manifest_name", None)
        if previous is None or previous.state.get("postprocess") != key or not name:
            return False
        if self.copier.written:
            return False
        listing = self.knowledge.listing
        manifest_storage = getattr(storage, "manifest_storage", storage)
        if listing is None or unwrap(manifest_storage) is not unwrap(storage):
            return bool(manifest_storage.exists(name))
        hashed = previous.manifests[0] if previous.manifests else []
        return name in listing and all(path in listing for path in hashed)

    def save_partial_record(self) -> None:
        """After a failure or an interrupt: record what landed, and only that."""
        if not self.host.dry_run:
            self.save_record(complete=False)

    def save_record(self, complete: bool) -> None:
        """Write what this run leaves on the destination (see Recorder)."""
        previous = self.previous
        manifests = previous.manifests if previous is not None else []
        if complete and self.manifest is not None and manifests[:1] != [self.manifest]:
            manifests = [self.manifest, *manifests][: self.options.keep_manifests]
        postprocess = self.post_process_key if complete else None
        listing = self.knowledge.listing
        new = self.recorder.next(previous, listing, manifests, postprocess)
        self.recorder.save(new, previous, complete)

    def prune(self) -> None:
        pruner = Pruner(self.host, self.backend, self.options.max_delete, self.retry)
        keep = set(self.sources) | self.outputs | {self.options.record_name}
        manifest_name = getattr(self.host.storage, "manifest_name", None)
        if isinstance(manifest_name, str):
            keep.add(manifest_name)
        previous = self.previous
        history = previous.manifests if previous is not None else []
        for paths in [self.manifest or [], *history][: self.options.keep_manifests]:
            keep.update(paths)
        listing = self.knowledge.listing if hasattr(self, "knowledge") else None
        if listing is not None:
            existing = set(listing)
        else:
            existing = set(previous.files) if previous is not None else set()
            for paths in history:
                existing.update(paths)
        sizes = {} if listing is None else {p: r.size for p, r in listing.items()}
        for path in pruner.run(existing, keep):
            self.report.other(path, "deleted", size=sizes.get(path))

    def pool(self, on_interrupt: Callable[[], None] | None = None) -> TransferPool:
        return TransferPool(self.options.workers, on_interrupt=on_interrupt)

    def raise_failures(self, pool: TransferPool, verb: str = "collected") -> None:
        if not pool.failures:
            return
        failures = sorted(pool.failures, key=lambda f: f.path)
        for fail in failures:
            self.report.error(fail.path, fail.reason)
            self.host.stderr.write(f"Could not collect '{fail.path}': {fail.reason}")
        raise CommandError(summary(failures, verb))

    def warn(self, message: str) -> None:
        if self.host.verbosity >= 1:
            self.host.stderr.write(message)


@contextmanager
def older_objects_frozen(thaw: bool = True) -> Iterator[None]:
    """Keep the cyclic GC's full passes off the objects that existed before
    the run (Django's, the project's) while it runs.

    A run builds a few objects per file; the full passes they trigger walked
    every object of the process: a fifth of a 5,000-file no-change run.
    Freezing changes no result. With ``thaw`` every frozen object is
    collectable again afterwards (also any the process froze before, which
    only undoes that optimisation); without it (a process about to exit) the
    next full pass stays small too.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if thaw:
            gc.unfreeze()


def summary(failures: list[Failure], verb: str) -> str:
    paths = [failure.path for failure in failures]
    named = ", ".join(paths[:NAMED_FAILURES])
    if len(paths) > NAMED_FAILURES:
        named += f" and {len(paths) - NAMED_FAILURES} more"
    noun = "file" if len(paths) == 1 else "files"
    return f"{len(paths)} static {noun} could not be {verb}: {named}."
