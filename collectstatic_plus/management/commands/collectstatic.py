"""``collectstatic``: stock options and messages, parallel and incremental work.

The command subclasses Django's own, so options, prompt, messages and summary
line are the installed version's. It adds its options (see ``options.py``),
hands the work to :class:`collectstatic_plus.run.Run`, and prints and counts
what the run returns. It overrides only the hooks below.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
from typing import Any, TextIO, cast

from django.contrib.staticfiles.management.commands import collectstatic as stock
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser, OutputWrapper

from ... import options as ours
from ...checks import require_staticfiles
from ...pool import Failed
from ...progress import Cleared, Terminal
from ...report import Report, check_target
from ...retry import PermanentError, first_line
from ...run import Run


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
        self.given: dict[str, Any] = {}
        self.run_options = ours.RunOptions()
        self.report = Report(dry_run=False)
        #: Where the JSON goes with ``--report -``: stdout, while every
        #: human line goes to stderr.
        self.report_out: OutputWrapper | None = None
        self._log_lock = threading.Lock()
        self.hiding = contextlib.ExitStack()  # our own files, from stock's code

    def add_arguments(self, parser: CommandParser) -> None:
        """Add our options to the stock ones."""
        super().add_arguments(parser)
        ours.add_arguments(parser)

    def set_options(self, **options: Any) -> None:
        """Also keep our options (``--check`` is a dry run), and build the
        storage now (stock first touches it right after, for its prompt)."""
        if options.get("check"):
            options["dry_run"] = True
        require_staticfiles()
        super().set_options(**options)
        self.given = options
        normalised = {**options, "ignore_patterns": self.ignore_patterns}  # stock's
        self.run_options = ours.run_options(normalised, self.symlink)
        keep_files = self.dry_run or options.get("report") is not None
        self.report = Report(self.dry_run, keep_files=keep_files)
        self.report.describe_options(options, self.run_options)
        ours.storage_ready(lambda: (self.storage.path, self.local))  # (built first)
        own = self.run_options.own_files  # (the run deletes the record)
        self.hiding.enter_context(ours.listing_without(self.storage, own))

    def log(self, msg: str, level: int = 2) -> None:
        """Serialise log lines: workers log concurrently."""
        if level > self.verbosity:
            return  # as stock would, without taking the lock
        with self._log_lock:
            super().log(msg, level)

    def execute(self, *args: Any, **options: Any) -> str | None:
        """User mistakes print as one line; the GC leaves the objects from
        before the run alone."""
        from_command_line = getattr(self, "_called_from_command_line", False)
        # The cyclic GC's full passes (and the one at exit) skip what existed
        # before the run (Django, the project): a tenth of a no-change run.
        gc.freeze()
        try:
            return super().execute(*args, **options)
        except ImproperlyConfigured as error:
            # Stock raises these (Django's own tests expect it); on the command
            # line they deserve a message, not a traceback.
            if from_command_line and not options.get("traceback"):
                raise CommandError(str(error)) from error
            raise
        finally:
            self.hiding.close()
            if self.report_out is not None:  # the summary went to stderr too
                self.stdout, self.report_out = self.report_out, None
            if not from_command_line:  # a process about to exit need not
                gc.unfreeze()

    def handle(self, **options: Any) -> str | None:
        """Stock's handle; ``--check`` then fails if anything would change.

        A report path that cannot be written fails before anything is done.
        With ``--report -`` stdout is the report's alone: stock's lines, its
        prompt (``input`` writes to ``sys.stdout``) and ours go to stderr.
        """
        check_target(options.get("report"), self.storage)
        with contextlib.ExitStack() as people_on_stderr:
            if options.get("report") == "-":
                self.report_out = self.stdout
                # stderr's stream, without stderr's red style
                self.stdout = OutputWrapper(cast(TextIO, self.stderr._out))
                people_on_stderr.enter_context(contextlib.redirect_stdout(sys.stderr))
            summary: str | None = super().handle(**options)
        status = str(self.report.post_processing.get("status", ""))
        unsimulated = status.startswith("not simulated")
        if self.given.get("check") and (unsimulated or self.report.changes):
            if summary:
                self.stdout.write(summary)  # (stock's, as the run ends)
            if unsimulated:
                raise CommandError(f"--check: post-processing {status}.", returncode=1)
            raise CommandError(
                f"The destination is not up to date: {self.report.changes} "
                "change(s) would be made.",
                returncode=1,
            )
        return summary

    def collect(self) -> dict[str, list[str]]:
        """Stock's own for ``--link``; otherwise our run (see run.py)."""
        if self.symlink and not self.local:
            raise CommandError("Can't symlink to a remote destination.")
        if self.symlink:
            with self.hiding:  # (closed here too: Django's tests call collect)
                return super().collect()
        self.report.describe_storage(self.storage)
        options = self.run_options.for_destination(self.local)
        terminal = self.terminal()
        run = Run(self.storage, options, self, self.report, terminal)
        ours.storage_ready(run.backend.ready)  # one line if it cannot be
        shown = self.stdout, self.stderr
        if terminal is not None:  # other messages clear the progress line
            self.stdout, self.stderr = (cast(Any, Cleared(o, terminal)) for o in shown)
        # SIGTERM stops the run like Ctrl-C (elsewhere, as stock: it ends it).
        previous = _on_sigterm(_interrupt)
        try:
            outcome = run.run()
        except Failed as failed:
            for failure in failed.failures:
                self.stderr.write(
                    f"Could not collect '{failure.path}': {failure.reason}"
                )
            raise CommandError(str(failed)) from None
        except Exception as error:  # stock's own exceptions included
            if not self.report.errors:
                said = str(error) if isinstance(error, CommandError) else None
                reason = said or first_line(error)
                self.report.errors.append({"path": "", "reason": reason})
            if self.dry_run and self.verbosity >= 1 and self.report.planned:
                self.stdout.write(self.report.table())  # the plan, then why not
            if isinstance(error, PermanentError):  # ours: one line, no traceback
                raise CommandError(str(error)) from error
            raise
        finally:
            _on_sigterm(previous)
            self.hiding.close()
            self.stdout, self.stderr = shown
            failing = self.stderr if self.report.errors else None  # (this run's)
            out = self.report_out or self.stdout
            self.report.write(self.given.get("report"), out, failing)
        self.copied_files += outcome.copied
        self.unmodified_files += outcome.unmodified
        self.post_processed_files = outcome.post_processed
        # Django 6.0 started counting deletions and conflicts.
        for name, found in (("deleted", outcome.deleted), ("skipped", outcome.skipped)):
            if f"{name}_files" in vars(self):
                getattr(self, f"{name}_files").extend(found)
        if self.verbosity >= 1 and self.dry_run:
            self.stdout.write(self.report.table())
        elif self.verbosity >= 2:
            self.stdout.write("\n".join(self.report.phase_lines()))
        return self.collected()

    def terminal(self) -> Terminal | None:
        """Where a live progress line goes: stderr if a TTY, at -v 1."""
        if self.verbosity == 1 and self.stderr.isatty():
            return Terminal(cast(TextIO, self.stderr._out))
        return None

    def collected(self) -> dict[str, list[str]]:
        """What stock's ``collect`` returns, on the installed Django."""
        result = {
            "modified": self.copied_files + self.symlinked_files,
            "unmodified": self.unmodified_files,
            "post_processed": self.post_processed_files,
        }
        for key in ("skipped", "deleted"):  # Django 6.0 added these two
            if f"{key}_files" in vars(self):
                result[key] = vars(self)[f"{key}_files"]
        return result
