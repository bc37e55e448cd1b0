"""A live progress line on an interactive terminal.

Hand-written rather than tqdm or rich: it is one line of text, updated at most
ten times a second from several threads, and not worth a runtime dependency
for every project that installs this app. It draws only when stderr is a TTY
and verbosity is 1, so logs and pipes stay clean.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

#: Seconds between two redraws.
INTERVAL = 0.1


class Progress:
    def __init__(self, stream: TextIO | None, label: str, total: int) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.drawn = 0.0
        self.lock = threading.Lock()

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        if self.stream is None:
            return
        with self.lock:
            self.files += files
            self.bytes += nbytes
            now = time.monotonic()
            if now - self.drawn >= INTERVAL or self.files >= self.total:
                self.drawn = now
                self._draw(now)

    def close(self) -> None:
        if self.stream is None:
            return
        with self.lock:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        elapsed = max(now - self.started, 1e-6)
        rate = self.files / elapsed
        left = max(self.total - self.files, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        self.stream.write(
            f"\r{self.label}: {self.files}/{self.total} files, "
            f"{self.bytes / 1e6:.1f} MB, {rate:.0f} files/s, ETA {eta}\x1b[K"
        )
        self.stream.flush()
