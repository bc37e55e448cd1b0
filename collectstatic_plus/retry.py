"""Retries for transient failures, and a concurrency limit that backs off.

A storage call that fails with a transient error (a dropped connection, a
timeout, HTTP 500/502/503/504, S3's SlowDown) is tried again after an
exponential backoff with jitter, up to ``attempts`` times and ``budget``
seconds in all. These retries wrap the whole storage call, so they come on
top of the SDK's own (botocore's legacy mode tries 5 times): at worst an
operation is sent attempts x SDK-attempts times, all bounded in time.

A permanent error (access denied, a missing bucket, bad or missing
credentials) is not worth another attempt: :class:`PermanentError` says so
in one line. It stops a run at once outside the per-file steps; there, it
stops a run once several files met one and none was accepted (see pool.py).

:class:`Throttle` bounds how many storage calls run at once: it halves when
the service says it is throttling (503 SlowDown) and creeps back up after a
run of successes, so a throttled pool stops hammering.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Errors(Protocol):
    """What a retry needs to know about a storage's errors (a ``Backend``)."""

    def classify(self, error: BaseException) -> str:
        """One of "unreachable", "transient", "throttled", "permanent" or
        "other"."""
        ...

    @property
    def endpoint(self) -> str:
        """Where the destination is, for messages."""
        ...

    @property
    def sdk_retries_connections(self) -> bool:
        """Whether the SDK itself retries a failed connection for long (Azure:
        about a minute): then one such failure opens the circuit breaker."""
        ...

    def describe(self, error: BaseException) -> tuple[int | None, str | None]:
        """The HTTP status and service error code, where the error has them."""
        ...

    #: What a permanent error's line asks the user to check.
    check_hint: str


class BuiltinErrors:
    """Without a backend: only the standard library's network errors retry."""

    def classify(self, error: BaseException) -> str:
        return (
            "transient"
            if isinstance(error, ConnectionError | TimeoutError)
            else "other"
        )

    def describe(self, error: BaseException) -> tuple[int | None, str | None]:
        return None, None

    endpoint = "the destination"
    sdk_retries_connections = False
    check_hint = "credentials, bucket and permissions"


def first_line(error: BaseException) -> str:
    """``Type: message`` on one line: SDK errors (Azure's) append the
    service's whole response over many lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    name = type(error).__name__
    if not lines:
        return name
    # "Parameter validation failed:" (botocore): its cause is the next line.
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{name}: {lines[0]} {lines[1]}"
    return f"{name}: {lines[0]}"


def first_few(items: list[str], shown: int) -> str:
    """The first ``shown`` items, comma-separated, then "and N more"."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


class PermanentError(Exception):
    """A failure no other file will escape; the message says what to fix."""


class Stopped(PermanentError):
    """The run may not write any more (its lease is lost): it stops."""


class Unreachable(PermanentError):
    """The destination could not be reached several times in a row."""


#: Failures in a row, across workers, to reach the destination (refused or
#: reset connections, names that do not resolve, TLS, timeouts) after which
#: a run stops trying: the circuit breaker.
BREAK_AFTER = 6


class Throttle:
    """At most ``limit`` calls at once; halves on throttling, regrows slowly."""

    def __init__(self, limit: int) -> None:
        self.ceiling = max(limit, 1)
        self.limit = self.ceiling
        self.running = 0
        self.successes = 0
        self.condition = threading.Condition()

    def __enter__(self) -> Throttle:
        with self.condition:
            while self.running >= self.limit:
                self.condition.wait()
            self.running += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self.condition:
            self.running -= 1
            self.condition.notify()

    def throttled(self) -> None:
        with self.condition:
            self.limit = max(1, self.limit // 2)
            self.successes = 0

    def succeeded(self) -> None:
        with self.condition:
            self.successes += 1
            if self.limit < self.ceiling and self.successes >= 20:
                self.limit += 1
                self.successes = 0
                self.condition.notify()


class Retry:
    def __init__(
        self,
        attempts: int = 4,
        budget: float = 60.0,
        base: float = 0.1,
        cap: float = 5.0,
        throttle: Throttle | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        errors: Errors | None = None,
    ) -> None:
        self.errors = errors or BuiltinErrors()
        self.attempts = attempts
        self.budget = budget
        self.base = base
        self.cap = cap
        self.throttle = throttle or Throttle(1 << 30)
        self.sleep = sleep
        self.retried = 0
        self.lock = threading.Lock()
        #: Failures to reach the destination in a row, and the error that
        #: opened the circuit breaker (every call fails at once after it).
        self.unreachable = 0
        self.broken: Unreachable | None = None
        #: Called before every attempt: raises Stopped once the run may no
        #: longer write (its lease is lost; see lease.Lease.guard).
        self.fence: Callable[[], None] | None = None

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` (about ``what``), retrying transient failures."""
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            if self.broken is not None:
                raise Unreachable(str(self.broken)) from self.broken.__cause__
            if self.fence is not None:
                self.fence()
            try:
                with self.throttle:
                    result = call()
            except Exception as error:
                kind = self.errors.classify(error)
                if kind == "unreachable":
                    self.note_unreachable(error)
                    kind = "transient"
                if kind == "permanent":
                    status, code = self.errors.describe(error)
                    cause = code or (
                        f"HTTP {status}" if status else type(error).__name__
                    )
                    said = first_line(error).rstrip(".")
                    if not said.startswith(cause):
                        said = f"{cause}: {said}"
                    raise PermanentError(
                        f"{what}: {said}. Check the destination's "
                        f"{self.errors.check_hint}."
                    ) from error
                if kind == "throttled":
                    self.throttle.throttled()
                out_of_time = time.monotonic() - started > self.budget
                if kind == "other" or attempt == self.attempts or out_of_time:
                    raise
                with self.lock:
                    self.retried += 1
                delay = min(self.cap, self.base * 2 ** (attempt - 1))
                self.sleep(delay * random.uniform(0.5, 1.5))
            else:
                self.throttle.succeeded()
                with self.lock:
                    self.unreachable = 0
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def note_unreachable(self, error: BaseException) -> None:
        """Count a failure to reach the destination; open the breaker (raise
        Unreachable) at BREAK_AFTER in a row."""
        with self.lock:
            self.unreachable += 1
            enough = BREAK_AFTER if not self.errors.sdk_retries_connections else 1
            if self.unreachable < enough or self.broken is not None:
                return
            self.broken = Unreachable(
                f"The destination ({self.errors.endpoint}) cannot be reached: "
                f"{first_line(error)}"
            )
        raise self.broken from error
