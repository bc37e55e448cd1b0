"""``collectstatic`` with ``--parallel``: stock behaviour, files copied on a pool.

The command keeps Django's own options, prompt, messages and summary by
subclassing the stock command; it overrides only the hooks listed below.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic as stock
from django.core.management.base import CommandError, CommandParser

from ...backends import prepared_for_threads
from ...conf import REMOTE_WORKERS, conf, local_workers
from ...postprocess import FoundFiles, PostProcessor
from ...sources import find_sources
from ...transfer import Failure, TransferPool

AUTO = "auto"
#: Failed paths named in the final error message; stderr lists all of them.
NAMED_FAILURES = 10


def worker_count(value: str) -> int | str:
    """argparse type for ``--parallel N``: a positive number, or "auto"."""
    if value == AUTO:
        return AUTO
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number of workers, not {value!r}"
        )
    return count


class Command(stock.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = 1
        self._log_lock = threading.Lock()

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--parallel`` to the stock options."""
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
                "'auto'): the WORKERS "
                f"setting, else {REMOTE_WORKERS} for a remote destination and "
                f"{local_workers()} for a local one."
            ),
        )

    def set_options(self, **options: Any) -> None:
        """Also read ``--parallel``."""
        super().set_options(**options)
        self.workers = self.resolve_workers(options.get("parallel"))

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

    def log(self, msg: str, level: int = 2) -> None:
        """Serialise log lines: workers log concurrently."""
        with self._log_lock:
            super().log(msg, level)

    def collect(self) -> dict[str, list[str]]:
        """Stock's collect, with each file's copy or link run on the pool."""
        if self.symlink and not self.local:
            raise CommandError("Can't symlink to a remote destination.")
        if self.clear:
            self.clear_dir("")
        with prepared_for_threads(self.storage, self.workers):
            found_files = self.collect_files()
        if self.post_process:
            processor = PostProcessor(self.storage, self.log, self.stderr)
            self.post_processed_files = processor.run(found_files, self.dry_run)
        return self.collected()

    def collect_files(self) -> FoundFiles:
        handler = self.link_file if self.symlink else self.copy_file
        found_files: FoundFiles = {}
        pool = TransferPool(self.workers)
        try:
            with pool:
                for source in find_sources(self.ignore_patterns):
                    if source.prefixed_path in found_files:
                        self.skip_duplicate(source.prefixed_path)
                        continue
                    found_files[source.prefixed_path] = (source.storage, source.path)
                    pool.submit(
                        source.prefixed_path,
                        handler,
                        source.path,
                        source.prefixed_path,
                        source.storage,
                    )
        except KeyboardInterrupt:
            self.report_failures(pool.failures)
            raise CommandError(
                f"Interrupted: {pool.completed} file(s) collected before the "
                "interrupt; run collectstatic again to finish.",
                returncode=130,
            ) from None
        if pool.failures:
            self.report_failures(pool.failures)
            raise CommandError(self.failure_summary(pool.failures))
        return found_files

    def skip_duplicate(self, prefixed_path: str) -> None:
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

    def report_failures(self, failures: list[Failure]) -> None:
        for failure in sorted(failures, key=lambda f: f.path):
            self.stderr.write(f"Could not collect '{failure.path}': {failure.reason}")

    @staticmethod
    def failure_summary(failures: list[Failure]) -> str:
        paths = sorted(failure.path for failure in failures)
        named = ", ".join(paths[:NAMED_FAILURES])
        more = len(paths) - NAMED_FAILURES
        if more > 0:
            named += f" and {more} more"
        noun = "file" if len(paths) == 1 else "files"
        return f"{len(paths)} static {noun} could not be collected: {named}."

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
