"""Run one task per file, inline or on a thread pool, and carry errors back.

``TransferPool`` is the only place worker threads are made. A task's exception never
escapes a worker silently: it is recorded against the file's path and the
caller reports every failure once all other files are done. Ctrl-C stops new
work, lets work in flight finish, and becomes a one-line CommandError. A
configuration error (``ImproperlyConfigured``) or an unreachable destination
is the same for every file: it stops the run and is raised as it is; so is a
storage's refusal (``PermanentError``) once REFUSED_BEFORE_ANY files met one
and none was done, which is what wrong credentials look like (otherwise a
refused file is that file's failure: a policy may deny one prefix). The number
of queued tasks is bounded, so a very large tree does not become a very large
queue of pending futures.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from .retry import PermanentError, Stopped, Unreachable, first_few, first_line

#: Failed paths named in the final error message; stderr lists all of them.
NAMED_FAILURES = 10
#: Tasks allowed to wait in the queue per worker, beyond those running.
QUEUE_PER_WORKER = 4

#: Errors that no other file can escape either: raised, not collected.
FATAL_ERRORS: tuple[type[Exception], ...] = (ImproperlyConfigured, Stopped, Unreachable)
#: Files refused before any file was done that stop the run.
REFUSED_BEFORE_ANY = 10


class Failure(NamedTuple):
    """A file whose task raised, and the exception it raised."""

    path: str
    error: BaseException

    @property
    def reason(self) -> str:
        if isinstance(self.error, PermanentError):  # it names the call already
            return str(self.error)
        return broken_link(self.error) or first_line(self.error)


def broken_link(error: BaseException) -> str | None:
    """Say so if ``error`` is a file not found because it is a symbolic link
    to nothing (``os.stat`` follows the link; the finders list it all the
    same); else None."""
    name = getattr(error, "filename", None)
    if not isinstance(error, FileNotFoundError) or not isinstance(name, str):
        return None
    try:
        target = os.readlink(name)
    except OSError:  # not a link, or gone
        return None
    if os.path.exists(name):
        return None
    return f"'{name}' is a broken symbolic link (to '{target}')"


#: The exit status after Ctrl-C or SIGTERM (a CommandError's returncode).
INTERRUPTED = 130


@contextlib.contextmanager
def interrupts_end_the_command() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) between the pools: one line and exit 130 too."""
    try:
        yield
    except KeyboardInterrupt:
        raise CommandError(
            "Interrupted; run collectstatic again to finish.", returncode=INTERRUPTED
        ) from None


class TransferPool:
    """Run ``fn(*args)`` per file with ``workers`` threads (1 means inline)."""

    def __init__(
        self,
        workers: int,
        on_interrupt: Callable[[], None] | None = None,
        done: str = "collected",
    ) -> None:
        self.workers = workers
        self.on_interrupt = on_interrupt
        #: What a completed task did to its file, for the interrupt's message.
        self.done = done
        self.failures: list[Failure] = []
        self.completed = 0
        self.refused = 0  # while none is done
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closing: ThreadPoolExecutor | None = None
        self._slots: threading.BoundedSemaphore | None = None
        #: Submitted tasks not done yet (at most the slots' count).
        self._unfinished: set[Future[None]] = set()
        if workers > 1:
            self._executor = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="collectstatic"
            )
            self._slots = threading.BoundedSemaphore(workers * (1 + QUEUE_PER_WORKER))

    def __enter__(self) -> TransferPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        try:
            self.close(cancel=exc_type is not None)
        except KeyboardInterrupt:
            # Ctrl-C while waiting for the last files: stop like any other.
            interrupted = True
            with contextlib.suppress(KeyboardInterrupt):  # a second one: go
                self.close(cancel=True)
        if interrupted:
            if self.on_interrupt is not None:
                self.on_interrupt()
            raise CommandError(
                f"Interrupted: {self.completed} file(s) {self.done} before the "
                "interrupt; run collectstatic again to finish.",
                returncode=INTERRUPTED,
            ) from None

    def submit(self, path: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` for ``path`` now (serial) or on a worker."""
        if self._executor is None or self._slots is None:
            self._run(path, fn, args)
            self._raise_fatal()
            return
        self._raise_fatal()
        self._slots.acquire()
        try:
            future = self._executor.submit(self._run, path, fn, args)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._unfinished.add(future)
        future.add_done_callback(self._release)

    def close(self, cancel: bool = False) -> None:
        """Wait for queued work, or with ``cancel`` only for work in flight.

        Raises the first fatal error a task met, unless cancelling.
        """
        if self._executor is not None:
            self._closing, self._executor = self._executor, None
        if self._closing is not None:
            # Wait for the tasks, not the threads: a Ctrl-C during
            # Thread.join makes Python 3.10 to 3.12 take a running thread
            # for ended, and the interpreter would exit under its write.
            self._closing.shutdown(wait=False, cancel_futures=cancel)
            with self._lock:
                unfinished = list(self._unfinished)
            try:
                wait(unfinished)
            except KeyboardInterrupt:
                self._closing.shutdown(wait=False, cancel_futures=True)
                raise
            self._closing.shutdown(wait=True)  # idle threads: at once
        if not cancel:
            self._raise_fatal()

    def _raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    def _run(self, path: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self.fatal is not None:
            return
        try:
            fn(*args)
        except FATAL_ERRORS as error:
            with self._lock:
                self.fatal = self.fatal or error
        except Exception as error:
            with self._lock:
                self.failures.append(Failure(path, error))
                if isinstance(error, PermanentError) and self.completed == 0:
                    self.refused += 1
                    if self.refused == REFUSED_BEFORE_ANY and self.fatal is None:
                        self.fatal = PermanentError(
                            f"{error} {REFUSED_BEFORE_ANY} files were refused "
                            "like this and none accepted, so the run stopped"
                        )
                        self.fatal.__cause__ = error.__cause__
        except BaseException as error:  # (SystemExit...): the main thread's
            with self._lock:
                self.fatal = self.fatal or error
        else:
            with self._lock:
                self.completed += 1

    def _release(self, future: Future[None]) -> None:
        assert self._slots is not None
        with self._lock:
            self._unfinished.discard(future)
        self._slots.release()


class Failed(Exception):
    """Files that could not be collected: the command prints each, then
    raises a CommandError with this message."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = sorted(failures, key=lambda failure: failure.path)
        paths = [failure.path for failure in self.failures]
        named = first_few(paths, NAMED_FAILURES)
        noun = "file" if len(paths) == 1 else "files"
        super().__init__(f"{len(paths)} static {noun} could not be collected: {named}.")
