"""A live progress line on an interactive terminal, one phase at a time.

Like ``rclone -P``, shortened to one line::

    Collecting: 1,204/2,230 files (54%), 18.3/40.2 MB, 410 files/s, ETA 2s, 3 retries

Hand-written rather than tqdm or rich: it is one line of text, updated at
most ten times a second from several threads, and not worth a runtime
dependency for every project that installs this app. It is drawn only when
stderr is a TTY and verbosity is 1, so logs and pipes stay clean. Whatever
else is written while a line is shown first clears it (:class:`Cleared`),
and a phase that ends, however it ends, leaves its last line behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TextIO

from django.core.files.storage import Storage
from django.core.management.base import OutputWrapper

#: Seconds between two redraws.
INTERVAL = 0.1


class Output(Protocol):
    """The command's output, as the steps of a run write to it."""

    stderr: OutputWrapper
    verbosity: int

    def log(self, msg: str, level: int = 2) -> None: ...


class Host(Output, Protocol):
    """What a run needs of the command: its output and two of stock's rules."""

    def delete_file(
        self, path: str, prefixed_path: str, source_storage: Storage
    ) -> bool: ...
    def clear_dir(self, path: str) -> None: ...


class Terminal:
    """The TTY the lines are drawn on; at most one line shown at a time."""

    def __init__(self, stream: TextIO, retries: Callable[[], int] = lambda: 0):
        self.stream = stream
        self.retries = retries
        self.lock = threading.RLock()
        self.shown = False

    def draw(self, text: str, end: bool = False) -> None:
        with self.lock:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if end else ""))
            self.stream.flush()
            self.shown = not end

    def clear(self) -> None:
        """Erase the line shown, if any, before another message."""
        with self.lock:
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.shown = False


class Cleared:
    """A command's ``stdout``/``stderr`` that clears the progress line
    before each message (and holds the terminal while writing it)."""

    def __init__(self, wrapped: Any, terminal: Terminal) -> None:
        self.wrapped = wrapped
        self.terminal = terminal

    def write(self, *args: Any, **kwargs: Any) -> None:
        with self.terminal.lock:
            self.terminal.clear()
            self.wrapped.write(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class Progress:
    """One phase: ``with Progress(terminal, "Collecting", files, size):``.

    ``total`` None means it is not known (then no percentage or ETA);
    without a terminal every call does nothing.
    """

    def __init__(
        self,
        terminal: Terminal | None,
        label: str,
        total: int | None,
        total_bytes: int = 0,
    ) -> None:
        self.terminal = terminal
        self.label = label
        self.total = total
        self.total_bytes = total_bytes
        self.files = 0
        self.bytes = 0
        self.errors = 0
        self.started = time.monotonic()
        self.drawn = 0.0
        self.lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.terminal is not None and self.total is None:  # say it began
            self.terminal.draw(f"{self.label}...")
            self.drawn = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        if self.terminal is None:
            return
        with self.lock:
            self.files += files
            self.bytes += nbytes
            now = time.monotonic()
            if now - self.drawn >= INTERVAL:
                self.drawn = now
                self.terminal.draw(self.line(now))

    def failed(self) -> None:
        """One more file that failed (shown as errors so far)."""
        with self.lock:
            self.errors += 1

    def close(self) -> None:
        """End the phase's line, if anything was shown for it."""
        if self.terminal is None or (not self.files and not self.drawn):
            return
        with self.lock:
            self.terminal.draw(self.line(time.monotonic(), done=True), end=True)
            self.terminal = None

    def line(self, now: float, done: bool = False) -> str:
        assert self.terminal is not None
        elapsed = max(now - self.started, 1e-6)
        rate = self.files / elapsed
        parts = [f"{self.files:,} file" + ("" if self.files == 1 else "s")]
        if self.total is not None:
            share = self.files / self.total if self.total else 1.0
            parts = [f"{self.files:,}/{self.total:,} files ({share:.0%})"]
        if self.total_bytes:
            parts.append(f"{human_size(self.bytes)}/{human_size(self.total_bytes)}")
        if done:
            parts.append(f"{elapsed:.1f} s")
        else:
            parts.append(f"{rate:,.0f} files/s")
            if self.total is not None and rate > 0:
                parts.append(f"ETA {max(self.total - self.files, 0) / rate:.0f}s")
        retries = self.terminal.retries()
        if retries:
            parts.append(f"{retries} {'retry' if retries == 1 else 'retries'}")
        if self.errors:
            parts.append(f"{self.errors} {'error' if self.errors == 1 else 'errors'}")
        return f"{self.label}: " + ", ".join(parts)


def human_size(count: int) -> str:
    """A byte count as people read it: 27 B, 4.1 kB, 40.2 MB."""
    if count < 1000:
        return f"{count} B"
    if count < 1000**2:
        return f"{count / 1000:.1f} kB"
    return f"{count / 1000**2:.1f} MB"
