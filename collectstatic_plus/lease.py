"""One run at a time per destination: a lease beside the sync record.

Before it reads the destination, a run (not a dry run) creates a small
object, ``<RECORD_NAME>.lease`` in the record's storage, with a conditional
write that fails if one exists: S3's ``If-None-Match: *``, Azure's and GCS's
equivalents, a hard link on local disk. It says who holds it and until when.
While the run lasts, a thread renews it every third of ``LEASE_TTL`` (a write
on the condition that it is still the version this run wrote); at the end
the run deletes it (on the same condition).

A second run finds it, says so, and waits up to ``LEASE_WAIT`` seconds for
it to go, then fails with one line naming the holder. A lease past its time
(its run was killed, or its machine lost) is taken over by a conditional
replace of the version that was read, so of two runs waiting for it only
one gets it.

The sync record is written only while the lease is known to be held: its
last renewal is recent enough that nobody can have taken it over. Storages
whose service cannot check conditions (``Backend.conditional`` False) get
the same steps checked just before each write: a best effort; one that does
not give back what was saved (it renames, or cannot be read) runs without a
lease, as stock would.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple

from django.core.management.base import CommandError

from .backends.base import Backend
from .options import RunOptions
from .retry import PermanentError, Retry, Stopped, Unreachable, first_line

#: Seconds between two looks at another run's lease while waiting.
POLL = 2.0
#: Times in a row a lease may refuse to be created and then not be there.
VANISHED = 20


class Holder(NamedTuple):
    """What a lease says: which run holds it, since and until when."""

    id: str
    host: str
    pid: int
    started: float
    until: float
    #: Which process table ``pid`` is in (boot and PID namespace, on Linux;
    #: empty elsewhere): a run there can tell that the holder is gone.
    processes: str = ""

    def dumps(self) -> bytes:
        return json.dumps(self._asdict(), sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> Holder | None:
        """The holder a lease names; None if it cannot be read (then it is
        treated as expired: whatever wrote it was not a run of ours)."""
        try:
            fields = json.loads(data)
            return cls(
                str(fields["id"]),
                str(fields["host"]),
                int(fields["pid"]),
                float(fields["started"]),
                _finite(fields["until"]),
                str(fields.get("processes", "")),
            )
        except (ValueError, TypeError, KeyError, OverflowError):
            return None

    def __str__(self) -> str:
        return f"the run on {self.host} (pid {self.pid}) since {_clock(self.started)}"

    def gone(self) -> bool:
        """Whether this holder's process is known to have ended: it ran in
        this process table (same boot, same PID namespace) and is not there."""
        if not self.processes or self.processes != process_table():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # there, but not ours to signal
            return False
        return False


def process_table() -> str:
    """This boot's id and PID namespace (Linux); empty where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return f"{boot.read().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


class Lease:
    """This run's lease on the destination: ``with lease:`` holds it."""

    def __init__(
        self,
        backend: Backend,
        retry: Retry,
        name: str,
        ttl: float,
        wait: float,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self.warn = warn
        self.clock = clock
        self.sleep = sleep
        self.me = Holder(
            uuid.uuid4().hex, socket.gethostname(), os.getpid(), 0, 0, process_table()
        )
        #: The version of the lease this run last wrote (None: not held), and
        #: the time it said it runs out.
        self.version: str | None = None
        self.until = 0.0
        #: Why the lease was lost, if it was.
        self.lost: str | None = None
        #: Why the last renewal failed, if it did (said if the lease runs out).
        self.unrenewed: Exception | None = None
        #: Why this run goes without a lease: a storage we do not know that
        #: does not give back what was saved (it renames or cannot be read).
        self.unheld: str | None = None
        self.stopping = threading.Event()
        self.heart: threading.Thread | None = None

    @classmethod
    def beside(
        cls, backend: Backend, options: RunOptions, warn: Callable[[str], None]
    ) -> Lease:
        """The lease beside the sync record, with retries of its own: never
        behind the uploads' throttle."""
        retry = Retry(options.retries, options.retry_budget, errors=backend)
        name, ttl, wait = options.lease_name, options.lease_ttl, options.lease_wait
        return cls(backend, retry, name, ttl, wait, warn)

    # Taking and giving back ---------------------------------------------------

    def __enter__(self) -> Lease:
        try:
            self.acquire()
            self.heart = threading.Thread(
                target=self.beat, name="collectstatic-plus lease", daemon=True
            )
            self.heart.start()
        except PermanentError as error:  # the first request to the destination
            raise CommandError(str(error)) from error
        except CommandError:
            raise
        except KeyboardInterrupt:
            self.release()  # if it was taken: not left to block others
            raise CommandError(
                "Interrupted while taking the lease; nothing was written.",
                returncode=130,
            ) from None
        except Exception as error:
            raise CommandError(
                f"Could not take the lease on the destination: {first_line(error)}"
            ) from error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        try:
            if self.heart is not None:
                self.heart.join()
        finally:  # given back even if a Ctrl-C cuts the wait short
            self.release()

    def acquire(self) -> None:
        """Create the lease, wait for another run's to go, or take over one
        past its time; a CommandError naming the holder after LEASE_WAIT."""
        started = self.clock()
        self.me = self.me._replace(started=started)
        told, vanished = False, 0
        while True:
            if self.write("Taking the lease", self.backend.create):
                if not self.backend.conditional:
                    self.check_kept()
                return
            found = self.call("Reading the lease", self.backend.fetch)
            if found is None:
                if not self.backend.conditional:
                    self.unheld = "the storage does not give back what it saved"
                    return
                vanished += 1  # it went in between: try again, but not forever
                if vanished > VANISHED:
                    raise CommandError(
                        f"Could not take the lease '{self.name}': the "
                        "destination neither accepts it nor shows one there."
                    )
                self.sleep(min(POLL, vanished * 0.1))
                continue
            theirs, their_version = Holder.loads(found[0]), found[1]
            if self.mine(theirs, their_version):
                return  # an attempt whose answer was lost had taken it
            now = self.clock()
            if theirs is None or theirs.until < now or theirs.gone():
                taken = self.write(
                    "Taking over the lease", self.backend.replace, their_version
                )
                if taken:
                    if theirs is not None and theirs.gone():
                        self.warn(
                            f"Took over the lease of {theirs}: that process has "
                            "ended without giving it back."
                        )
                    elif theirs is not None:
                        self.warn(
                            f"Took over the lease of {theirs}: it ran out at "
                            f"{_clock(theirs.until)} (that run seems to have died)."
                        )
                    return
                continue  # another run took it first
            waited = now - started
            if waited >= self.wait:
                raise CommandError(
                    f"Another collectstatic is writing to this destination: "
                    f"{theirs}, its lease renewed until {_clock(theirs.until)}. "
                    f"Waited {waited:.0f} s (LEASE_WAIT); try again once it "
                    "has finished."
                )
            if not told:
                self.warn(
                    f"Waiting for {theirs} to finish writing to this "
                    f"destination (up to {self.wait:.0f} s)..."
                )
                told = True
            self.sleep(min(POLL, self.wait - waited))

    def check_kept(self) -> None:
        """On a storage we do not know: read the new lease back, and go
        without one if the storage did not keep it as written."""
        found = self.call("Reading the lease", self.backend.fetch)
        if found is not None and found[1] == self.version:
            return
        self.version = None
        self.unheld = "the storage does not give back what it saved"
        with contextlib.suppress(Exception):
            self.backend.storage.delete(self.name)

    def release(self) -> None:
        """Delete the lease if it is still the one this run wrote."""
        version, self.version = self.version, None
        if version is None or self.clock() >= self.until:
            return  # (run out: any run may take it over; the service may hang)
        try:
            self.call("Giving back the lease", self.backend.remove, version)
        except Exception as error:  # the next run takes it over in time
            if not isinstance(error, Unreachable):  # (the run says so)
                self.warn(
                    f"Could not delete the lease '{self.name}' ({first_line(error)}"
                    "); the next run waits for it to run out."
                )

    # Keeping it ---------------------------------------------------------------

    def beat(self) -> None:
        """Renew the lease every third of its time until the run ends."""
        while not self.stopping.wait(self.ttl / 3):
            self.renew()

    def renew(self) -> None:
        version = self.version
        if version is None or self.lost is not None:
            return
        try:
            if self.write("Renewing the lease", self.backend.replace, version):
                self.unrenewed = None
                return
            found = self.call("Reading the lease", self.backend.fetch)
        except Exception as error:  # tried again at the next beat, while time is left
            self.unrenewed = error
            return
        if found is None or not self.mine(Holder.loads(found[0]), found[1]):
            self.lost = "another run replaced it"

    def mine(self, holder: Holder | None, version: str) -> bool:
        """Whether ``holder`` is this run (a write retried after its answer
        was lost had landed); if so, the lease is held at ``version``."""
        if holder is None or holder.id != self.me.id:
            return False
        self.version, self.until = version, holder.until
        return True

    def holds(self) -> bool:
        """Whether no other run can have taken the lease: renewed recently
        enough that it has not run out (a third of its time to spare)."""
        if self.version is None or self.lost is not None:
            return False
        return self.clock() < self.until - self.ttl / 3

    def why_lost(self) -> str:
        if self.lost is not None:
            return self.lost
        why = f": {first_line(self.unrenewed)}" if self.unrenewed else ""
        return f"it ran out at {_clock(self.until)} without renewal{why}"

    def guard(self) -> None:
        """Before each of the run's requests while the lease is held: Stopped
        once another run may have it (lost, or not renewed in time)."""
        if self.version is not None and not self.holds():
            raise Stopped(
                f"This run lost its lease on the destination ({self.why_lost()}) "
                "and stopped writing"
            )

    def check(self) -> None:
        """Before the record is written: a CommandError if the lease is lost."""
        if self.holds() or self.unheld is not None:
            return
        why = self.why_lost()
        raise CommandError(
            f"This run lost its lease on the destination ({why}); the sync "
            "record was not written. Run collectstatic again."
        )

    # Helpers ------------------------------------------------------------------

    def write(self, what: str, method: Callable[..., str | None], *args: str) -> bool:
        """Write the lease, held until now + TTL, with ``method`` (create or
        replace, on its condition); whether the condition was met."""
        until = self.clock() + self.ttl
        data = self.me._replace(until=until).dumps()
        version = self.call(what, method, data, *args)
        if version is None:
            return False
        self.version, self.until = version, until
        return True

    def call(self, what: str, method: Callable[..., Any], *args: Any) -> Any:
        """``method(name, *args)``, retried as every storage call is."""
        return self.retry(what, lambda: method(self.name, *args))


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"not a time: {value!r}")
    return number


def _clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(stamp))
