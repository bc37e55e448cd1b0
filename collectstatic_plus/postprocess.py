"""Hand the collected files to the storage's own ``post_process``, as stock does,
but only as many as must be.

Each run chooses one of three ways (:func:`.incremental.plan`), and the
report says which and why: *up to date* (nothing it depends on changed since
the last complete run, and all it wrote is still there: skipped);
*incremental* (``post_process`` gets the files whose output can differ, the
manifest still names every file); *full* (every file, as stock does, when
anything cannot be vouched for).

Either way the storage's I/O is staged (see :mod:`.staging`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django
from django.core.files.storage import Storage
from django.core.management.base import CommandError

from .backends.base import Backend, Listing, unwrap
from .cache import build_cache
from .hooks import Hooks, NotSettled
from .incremental import Plan, full_order, rows_after, settles, subset, would_publish
from .incremental import plan as plan_for
from .options import RunOptions
from .pool import INTERRUPTED
from .progress import Output, Progress, Terminal
from .record import Processed, Record
from .report import Report
from .retry import Retry, first_line
from .sources import Source, found_files
from .staging import Staging
from .target import FlushError, Target
from .vouch import settings_key, vouch

#: Django 6.1 turned a failed post-process into a CommandError with its notes.
RAISES_COMMAND_ERROR = django.VERSION >= (6, 1)
#: A dry run's status with a storage whose code we do not know.
STOCK_DRY_RUN = (
    "not simulated ({}.post_process() is called with dry_run=True, as by stock)"
)


class PostProcessing:
    """The post-process step of a run, and what it leaves for the next steps."""

    def __init__(
        self,
        storage: Storage,
        backend: Backend,
        retry: Retry,
        report: Report,
        host: Output,
        options: RunOptions,
        terminal: Terminal | None,
    ) -> None:
        self.storage = storage
        #: The storage itself, not staticfiles_storage's LazyObject.
        self.target = unwrap(storage)
        self.backend = backend
        self.retry = retry
        self.report = report
        self.host = host
        self.options = options
        self.terminal = terminal
        #: The files the collection copied (or, dry, would copy).
        self.copied: set[str] = set()
        self.key = settings_key(storage) if hasattr(storage, "post_process") else ""
        #: For the next record: what each source's last complete post-process
        #: with these settings did (None until this run knows it: up to date,
        #: or run), the hashed names of the manifest written, and what failed
        #: attempts left in the destination (see Staging.close).
        self.processed: dict[str, Processed] | None = None
        self.manifest: list[str] | None = None
        self.state: dict[str, str] = {}  # (its settings; Staging.published)
        self.left: list[str] = []
        #: The build cache (local destinations, storages we know), or if one
        #: is given but cannot be used, why.
        folder, size = options.cache_dir, options.cache_max_bytes
        self.cache, self.no_cache = build_cache(
            self.target, self.key, backend.local, folder, size
        )

    @property
    def outputs(self) -> set[str]:
        """What --delete keeps: the outputs, and what they were made from."""
        rows = (self.processed or {}).values()
        return {name for row in rows for name in (*row.outputs, *row.refs)}

    @property
    def consumed(self) -> set[str]:
        """Originals the post-processor removed."""
        return {path for path, row in (self.processed or {}).items() if row.consumed}

    def last(self, previous: Record | None) -> Record | None:
        """The last complete post-process with these settings: the sync
        record's, else (a fresh destination, no record) the build cache's."""
        current = previous is not None and previous.processed
        if current and previous.state.get("postprocess") == self.key:  # type: ignore[union-attr]
            return previous
        if previous is None and self.cache is not None and self.cache.state():
            return self.cache.as_record()
        return previous

    def consumes(self, previous: Record | None) -> dict[str, str]:
        """Originals the post-processor removed last time and will remove again
        (same settings), with the MD5 each had: not worth copying again while
        unchanged."""
        last = self.last(previous)
        if last is None or last.state.get("postprocess") != self.key:
            return {}
        return {path: row.md5 for path, row in last.processed.items() if row.consumed}

    def run(
        self,
        sources: Mapping[str, Source],
        listing: Listing | None,
        previous: Record | None,
        copied: set[str],
    ) -> list[str]:
        """Post-process what must be; the originals processed."""
        if self.no_cache:
            self.host.log(f"The build cache is not used: {self.no_cache}.", level=1)
        if not hasattr(self.storage, "post_process"):
            return []
        self.copied = copied
        digests = {p: s.digest.md5 for p, s in sources.items() if s.digest}
        last = self.last(previous)
        if self.cache is not None and last is not previous and listing is not None:
            # A fresh destination: the outputs of unchanged files (not of those
            # post-processed again: a fresh complete run would not leave their
            # old outputs) come back from the build cache (a dry run checks them).
            assert last is not None
            again = subset(digests, last.processed)
            target = None if self.options.dry_run else Target(self.target)
            listing = self.cache.restore(digests, listing, target, again)
            if target is None:
                for name in sorted(self.cache.restored.outputs):
                    self.host.log(f"Would restore {name} from the build cache", 1)
        flag, backend = self.options.distrust, self.backend
        plan = plan_for(
            self.target, self.key, digests, listing, last, copied, backend, flag
        )
        if plan.mode == "up to date":
            assert last is not None
            self.processed = dict(last.processed)
            self.state = {**last.state, "postprocess": self.key}
            self.report.post_processing = self.described({"status": "up to date"})
            self.keep_in_cache(plan)
            self.host.log("Post-processing up to date.", level=1)
            return []
        try:
            done = self.attempt(plan, sources, listing, last, digests)
            if done is None and plan.mode == "incremental":
                # A complete run would not settle its references: run one.
                reason = "references would not settle in a complete run"
                full = Plan("full", dict.fromkeys(digests, "full run"), reason)
                done = self.attempt(full, sources, listing, last, digests)
        except (KeyboardInterrupt, CommandError) as error:
            if getattr(error, "returncode", INTERRUPTED) != INTERRUPTED:
                raise  # (a pool's interrupt is a CommandError)
            raise CommandError(
                "Interrupted during post-processing; the previous manifest is "
                "still in place. Run collectstatic again to finish.",
                returncode=INTERRUPTED,
            ) from None
        return done or []

    def attempt(
        self,
        plan: Plan,
        sources: Mapping[str, Source],
        listing: Listing | None,
        last: Record | None,
        digests: Mapping[str, str],
    ) -> list[str] | None:
        """Run the plan over the last complete post-process; None if it was
        incremental and a complete run would not settle (nothing written)."""
        storage = self.target
        known = vouch(storage) is None
        rows = last.processed if last is not None else {}
        staging = Staging(
            self.storage,
            self.backend,
            sources,
            listing,
            self.options.workers,
            simulate=self.options.dry_run,
            retry=self.retry,
            known=known,
            force=self.options.force,
            last=rows,
            resave=plan.resaves,
            verify=self.options.verify,
        )
        incremental = plan.mode == "incremental"
        outside = {
            path: row.hashed
            for path, row in rows.items()
            if incremental and path in digests and path not in plan.files and row.hashed
        }

        def before_manifest() -> None:
            """Every file is processed: a complete run would have settled
            (else nothing is written), and the files land before the manifest
            and anything the storage does after it (WhiteNoise compresses)."""
            if incremental and not settles(
                storage, digests, rows, hooks.refs, plan.files
            ):
                raise NotSettled
            staging.write_staged()

        order = full_order(list(sources)) if incremental else None
        hooks = Hooks(
            storage, outside, order, before_manifest, staging, rows, self.copied
        )
        self.report.post_processing = self.described(plan.described())
        done = False
        try:
            try:
                results = self.each(staging, hooks, plan.files, incremental)
            except NotSettled:
                return None
            if results is None:  # a dry run that could not be simulated
                return []
            processed, names, owner = results
            if staging.simulate and staging.known:
                self.say_would_write(staging, owner)
                processed = []  # stock's summary: these skip a dry run's post_process
            else:
                staging.flush()
            done = True
        except FlushError as error:  # (before the manifest too: write_staged)
            raise error.said(self.host.stderr.write) from None
        finally:
            self.left += staging.close(failed=not done)
        self.remember(plan, digests, rows, hooks, names, owner, staging)
        self.keep_in_cache(plan)
        self.report_plan(plan, staging, names)
        return processed

    def each(
        self,
        staging: Staging,
        hooks: Hooks,
        files: Mapping[str, str],
        incremental: bool = False,
    ) -> tuple[list[str], dict[str, str], dict[str, str]] | None:
        """Run ``post_process`` over ``files`` and log each result as stock
        does: the originals processed, each one's name, and each output's
        source. None if a dry run could not simulate it.

        A dry run simulates a storage whose code we know (``staging.known``)
        to the end, its writes staged; any other is called with
        ``dry_run=True``, as stock calls it, and fails where stock fails.
        """
        # Counted by the sources done (later passes go over some again);
        # what follows on the outputs (WhiteNoise compressing) has no total.
        progress = Progress(self.terminal, "Post-processing", len(files))
        seen: set[str] = set()
        post_process: Any = getattr(self.storage, "post_process")  # noqa: B009
        processed: list[str] = []
        names: dict[str, str] = {}
        owner: dict[str, str] = {}  # an output's source
        state = ("hashed_files", "manifest_hash")
        saved = {k: v for k, v in vars(staging.main.storage).items() if k in state}
        as_stock = staging.simulate and not staging.known
        simulated = staging.simulate and staging.known  # by us, to the end
        try:
            with staging.active(), hooks.installed():
                paths = found_files(staging.sources, files)
                for original, processed_path, done in post_process(
                    paths, dry_run=as_stock
                ):
                    if isinstance(done, RuntimeError) and incremental:
                        raise NotSettled  # its passes ran out: run them all
                    if isinstance(done, Exception):  # dry: the report says it
                        progress.close()  # (its line before stock's, not after)
                        self.fail(original, done, quietly=simulated)
                    source = owner.get(original, original)
                    variant = processed_path in (f"{original}.gz", f"{original}.br")
                    if variant and progress.total is not None:
                        progress.close()  # the outputs' turn: no total known
                        progress = Progress(self.terminal, "Compressing", None)
                    noted = simulated or not staging.simulate  # (stock's dry: no)
                    if variant and noted and processed_path not in hooks.kept:
                        staging.note_variant(original, processed_path, self.copied)
                    if isinstance(processed_path, str):
                        names.setdefault(source, processed_path)
                        owner.setdefault(processed_path, source)
                    if done:
                        if not simulated:  # (said after, if it would be)
                            self.host.log(
                                f"Post-processed '{original}' as '{processed_path}'",
                                level=2,
                            )
                        processed.append(original)
                    elif not simulated:
                        self.host.log(f"Skipped post-processing '{original}'")
                    if progress.total is None:
                        progress.advance()
                    elif source not in seen:
                        seen.add(source)
                        progress.advance()
        except Exception as error:
            if not simulated or isinstance(error, NotSettled):
                raise
            self.report.post_processing = {
                "status": f"not simulated ({first_line(error)})"
            }
            return None
        finally:
            if staging.simulate:  # a dry run leaves the storage's state alone
                vars(staging.main.storage).update(saved)
            progress.close()
        return processed, names, owner

    def say_would_write(self, staging: Staging, source_of: Mapping[str, str]) -> None:
        """A dry run's line for each file post-processing would write."""
        outcome = staging.outcome()
        for name in outcome["would_write"]:  # type: ignore[attr-defined]
            source = source_of.get(name, name)
            self.host.log(f"Would post-process {source} -> {name}", level=1)
        if outcome["manifest_changes"] and staging.manifest_name:
            self.host.log(f"Would write {staging.manifest_name}", level=1)
        for name in outcome.get("would_delete", ()):  # type: ignore[attr-defined]
            self.host.log(f"Would delete {name}", level=1)

    def remember(
        self,
        plan: Plan,
        digests: Mapping[str, str],
        rows: Mapping[str, Processed],
        hooks: Hooks,
        names: dict[str, str],
        owner: Mapping[str, str],
        staging: Staging,
    ) -> None:
        """What the next record says of this post-process."""
        if staging.simulate:  # what its manifest would publish: --delete keeps it
            self.manifest = would_publish(self.target, plan, digests, rows, names)
            return
        self.state = {"postprocess": self.key, "manifest": staging.published or ""}
        outputs: dict[str, list[str]] = {}  # by source
        for output, source in owner.items():
            outputs.setdefault(source, []).append(output)
        self.processed = rows_after(
            self.target, plan, digests, rows, hooks.refs, names, outputs
        )
        hashed = getattr(self.target, "hashed_files", None)
        if isinstance(hashed, dict):
            self.manifest = sorted(set(hashed.values()))

    def keep_in_cache(self, plan: Plan) -> None:
        """Leave this post-process in the build cache (not from a dry run)."""
        if self.cache is None or self.processed is None or self.options.dry_run:
            return
        problem = self.cache.keep(self.processed, plan.files, self.target.path)
        if problem and self.host.verbosity >= 1:
            self.host.stderr.write(problem)

    def described(self, outcome: Mapping[str, object]) -> dict[str, Any]:
        """How post-processing ran and why, for the report; outputs the build
        cache put back are written too (so --check fails on them)."""
        described: dict[str, Any] = dict(outcome)
        if self.cache is not None and self.cache.report:
            described["cache"] = dict(self.cache.report)
            key = "would_write" if self.options.dry_run else "written"
            if restored := self.cache.restored.outputs:
                described[key] = sorted({*described.get(key, ()), *restored})
        if self.no_cache:
            described["cache"] = {"unused": self.no_cache}
        return described

    def report_plan(self, plan: Plan, staging: Staging, names: dict[str, str]) -> None:
        report = self.report
        outcome: dict[str, object]
        if staging.simulate and not staging.known:  # called as stock calls it
            outcome = {"status": STOCK_DRY_RUN.format(type(self.target).__name__)}
        else:
            outcome = staging.outcome()
        report.post_processing = self.described({**plan.described(), **outcome})
        for original, hashed_name in names.items():
            if original in report.files:
                action = report.files[original].action
                report.file(original, action, hashed_name=hashed_name)

    def fail(self, original: str, error: Exception, quietly: bool = False) -> None:
        """A failure the storage yielded: said and raised as stock does."""
        if quietly:
            raise error
        self.report.error(original, first_line(error), landed=True)
        self.host.stderr.write(f"Post-processing '{original}' failed!\n\n")
        if not RAISES_COMMAND_ERROR:
            raise error
        message = "\n".join([str(error), *getattr(error, "__notes__", ())])
        raise CommandError(message) from error
