"""``collectstatic``: stock options and messages, parallel and incremental work.

The command subclasses Django's own, so options, prompt, messages and summary
line are the installed version's. It overrides only the hooks listed below and
hands the run to :class:`collectstatic_plus.collector.Collector`.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic as stock
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from ...backends import Backend, backend_for
from ...collector import Collector, RunOptions, older_objects_frozen
from ...conf import REMOTE_WORKERS, conf, local_workers
from ...minify import MinifySettings
from ...report import Report

AUTO = "auto"


def worker_count(value: str) -> int | str:
    """argparse type for ``--parallel N``: a positive number, or "auto"."""
    if value == AUTO:
        return AUTO
    return positive(value, "workers")


def positive(value: str, what: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number of {what}, not {value!r}"
        )
    return count


def count(value: str) -> int:
    """argparse type for ``--max-delete``: zero or more."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(
            f"must be 0 or a positive number, not {value!r}"
        )
    return number


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler (main thread only); return the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


class Command(stock.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_options = RunOptions()
        self.report = Report(dry_run=False)
        self.report_to: str | None = None
        self.check_only = False
        self._log_lock = threading.Lock()

    def add_arguments(self, parser: CommandParser) -> None:
        """Add our options to the stock ones."""
        super().add_arguments(parser)
        parser.add_argument(
            "--parallel",
            nargs="?",
            const=AUTO,
            default=None,
            type=worker_count,
            metavar="N",
            help=(
                "Copy or upload files with N threads. Without N (or with "
                "'auto'): the WORKERS setting, else "
                f"{REMOTE_WORKERS} for a remote destination and "
                f"{local_workers()} for a local one."
            ),
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Copy every file, even those the destination already holds.",
        )
        parser.add_argument(
            "--verify",
            action="store_true",
            help="Ignore the sync record: check each file against the destination.",
        )
        parser.add_argument(
            "--delete",
            action="store_true",
            help=(
                "After a successful run, delete destination files this "
                "collection did not produce."
            ),
        )
        parser.add_argument(
            "--max-delete",
            type=count,
            metavar="N",
            help="With --delete: stop, deleting nothing, if more than N are stale.",
        )
        parser.add_argument(
            "--minify",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=(
                "Minify CSS and JS as they are collected (default: the MINIFY setting)."
            ),
        )
        parser.add_argument(
            "--report",
            metavar="FILE",
            help="Write a JSON report of the run to FILE ('-' for stdout).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                "Dry run that exits with status 1 if anything would change "
                "(implies --dry-run)."
            ),
        )
        parser.add_argument(
            "--keep-manifests",
            type=lambda value: positive(value, "manifests"),
            metavar="K",
            help=(
                "With --delete: keep the files named by the last K manifests "
                f"(default: the KEEP_MANIFESTS setting, {conf.KEEP_MANIFESTS})."
            ),
        )

    def set_options(self, **options: Any) -> None:
        """Also read our options, and refuse combinations that make no sense."""
        if options.get("check"):
            options["dry_run"] = True
        super().set_options(**options)
        self.check_only = bool(options.get("check"))
        self.report_to = options.get("report")
        self.report = Report(
            self.dry_run, keep_files=self.dry_run or self.report_to is not None
        )
        self.report.options = {
            key: options.get(key)
            for key in (
                "dry_run",
                "clear",
                "link",
                "post_process",
                "ignore_patterns",
                "use_default_ignore_patterns",
                "parallel",
                "force",
                "verify",
                "delete",
                "max_delete",
                "keep_manifests",
            )
        }
        if options.get("delete") and self.symlink:
            raise CommandError("--delete cannot be combined with --link.")
        minify = options.get("minify")
        minify = conf.MINIFY if minify is None else bool(minify)
        if minify and self.symlink:
            raise CommandError(
                "--link cannot be combined with minification (--minify or the "
                "MINIFY setting): a symlink serves the source as it is."
            )
        keep = options.get("keep_manifests")
        self.run_options = RunOptions(
            workers=self.resolve_workers(options.get("parallel")),
            force=bool(options.get("force")),
            verify=bool(options.get("verify")),
            delete=bool(options.get("delete")),
            max_delete=self.option_count(options, "max_delete", minimum=0),
            keep_manifests=keep if keep is not None else conf.KEEP_MANIFESTS,
            record_name=conf.RECORD_NAME,
            retries=conf.RETRIES,
            retry_budget=conf.RETRY_BUDGET,
            minify=MinifySettings(
                enabled=minify,
                include=conf.MINIFY_INCLUDE,
                exclude=conf.MINIFY_EXCLUDE,
                source_mapped=conf.MINIFY_SOURCE_MAPPED,
            ),
        )

    def resolve_workers(self, parallel: object) -> int:
        """Workers for a ``--parallel`` value: None (no flag), "auto", N."""
        if parallel is None:
            return 1
        if isinstance(parallel, str):
            try:
                parallel = worker_count(parallel)
            except argparse.ArgumentTypeError as error:
                raise CommandError(f"--parallel {error}.") from None
        if parallel == AUTO:
            return conf.WORKERS or (local_workers() if self.local else REMOTE_WORKERS)
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise CommandError(
                f"--parallel must be a positive whole number of workers, "
                f"not {parallel!r}."
            )
        return parallel

    @staticmethod
    def option_count(options: dict[str, Any], key: str, minimum: int) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            flag = "--" + key.replace("_", "-")
            raise CommandError(
                f"{flag} must be a whole number >= {minimum}, not {value!r}."
            )
        return value

    def log(self, msg: str, level: int = 2) -> None:
        """Serialise log lines: workers log concurrently."""
        if level > self.verbosity:
            return  # as stock would, without taking the lock
        with self._log_lock:
            super().log(msg, level)

    def execute(self, *args: Any, **options: Any) -> str | None:
        """SIGTERM stops the run like Ctrl-C; user mistakes print as one line;
        the GC leaves the objects from before the run alone."""
        previous = _on_sigterm(_interrupt)
        from_command_line = getattr(self, "_called_from_command_line", False)
        try:
            with older_objects_frozen(thaw=not from_command_line):
                return super().execute(*args, **options)
        except ImproperlyConfigured as error:
            # Stock raises these (Django's own tests expect it); on the command
            # line they deserve a message, not a traceback.
            if from_command_line and not options.get("traceback"):
                raise CommandError(str(error)) from error
            raise
        finally:
            _on_sigterm(previous)

    def handle(self, **options: Any) -> str | None:
        """Stock's handle; ``--check`` then fails if anything would change."""
        summary: str | None = super().handle(**options)
        if self.check_only and self.report.changes:
            if summary:
                self.stdout.write(summary)
            raise CommandError(
                f"The destination is not up to date: {self.report.changes} "
                "change(s) would be made.",
                returncode=1,
            )
        return summary

    def collect(self) -> dict[str, list[str]]:
        """Stock's checks, then the run: see collectstatic_plus.collector."""
        if self.symlink and not self.local:
            raise CommandError("Can't symlink to a remote destination.")
        storage_class = self.storage.__class__
        self.report.storage = {
            "class": f"{storage_class.__module__}.{storage_class.__qualname__}",
            "location": str(getattr(self.storage, "location", "") or ""),
        }
        try:
            Collector(self, self.run_options, self.report, self.progress_to()).run()
        except CommandError as error:
            if not self.report.errors:
                self.report.errors.append({"path": "", "reason": str(error)})
            raise
        finally:
            self.write_report()
        if self.verbosity >= 1 and self.dry_run:
            self.stdout.write(self.report.table())
        elif self.verbosity >= 2:
            self.stdout.write("\n".join(self.report.phase_lines()))
        return self.collected()

    def progress_to(self) -> Any:
        """The terminal for a live progress line: stderr if a TTY, at -v 1."""
        if self.verbosity == 1 and self.stderr.isatty():
            return self.stderr._out
        return None

    def write_report(self) -> None:
        if self.report_to is None:
            return
        text = self.report.dumps()
        if self.report_to == "-":
            self.stdout.write(text, ending="")
            return
        try:
            with open(self.report_to, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise CommandError(f"Could not write the report: {error}") from error

    def clear_dir(self, path: str) -> None:
        """Clear by listing where the backend can (stock's exists("") breaks S3)."""
        backend = backend_for(self.storage)
        if self.local or path or type(backend).listing is Backend.listing:
            super().clear_dir(path)
            return
        names = sorted(backend.listing() or ())
        deleted: list[str] | None = vars(self).get("deleted_files")
        # Django 6.0 moved these messages to -v2 and started counting them.
        level = 1 if deleted is None else 2
        for name in names:
            verb = "Pretending to delete" if self.dry_run else "Deleting"
            self.log(f"{verb} '{name}'", level=level)
            if deleted is not None:
                deleted.append(name)
        if names and not self.dry_run:
            backend.delete_many(names)

    def skip_duplicate(self, prefixed_path: str) -> None:
        """Report a later file for an already found path, as the installed Django."""
        # Django 6.0 started counting these and moved the message to -v2.
        skipped: list[str] | None = vars(self).get("skipped_files")
        if skipped is not None:
            skipped.append(prefixed_path)
        self.log(
            f"Found another file with the destination path '{prefixed_path}'. "
            "It will be ignored since only the first encountered file "
            "is collected. If this is not what you want, make sure "
            "every static file has a unique path.",
            level=1 if skipped is None else 2,
        )

    def note_deleted(self, path: str) -> None:
        """Count a pruned file where Django 6.x counts deletions."""
        deleted: list[str] | None = vars(self).get("deleted_files")
        if deleted is not None:
            deleted.append(path)

    def collected(self) -> dict[str, list[str]]:
        result = {
            "modified": self.copied_files + self.symlinked_files,
            "unmodified": self.unmodified_files,
            "post_processed": self.post_processed_files,
        }
        # Django 6.0 added these two counts to the summary line.
        for key in ("skipped", "deleted"):
            if f"{key}_files" in vars(self):
                result[key] = vars(self)[f"{key}_files"]
        return result
