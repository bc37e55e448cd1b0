"""The lease's own rules, on a clock the tests move (lease.py).

Two real runs at once, and a killed one, against every server: the
"one run at a time" tests in test_contract.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError

from collectstatic_plus.backends.base import Backend
from collectstatic_plus.backends.local import LocalBackend
from collectstatic_plus.lease import POLL, Holder, Lease
from collectstatic_plus.retry import Retry, Stopped

from .conftest import RECORD, many, run_collectstatic
from .storages import RemoteLikeStorage

TTL = 30.0


class Clock:
    """Seconds since the epoch that pass only when slept."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def lease(backend: Backend, clock: Clock, said: list[str], wait: float = 10) -> Lease:
    return Lease(
        backend, Retry(), "x.lease", TTL, wait, said.append, clock, clock.sleep
    )


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return LocalBackend(FileSystemStorage(location=str(tmp_path)))


def test_any_storage_gets_the_conditions_checked_before_each_write(
    tmp_path: Path,
) -> None:
    """A storage we do not know: looked at, then written (a best effort)."""
    backend = Backend(RemoteLikeStorage(str(tmp_path)))
    assert backend.conditional is False
    one = backend.create("x.lease", b"one")
    assert one is not None and backend.create("x.lease", b"two") is None
    assert backend.fetch("x.lease") == (b"one", one)
    assert backend.replace("x.lease", b"three", "1") is None
    three = backend.replace("x.lease", b"three", one)
    assert three is not None and backend.remove("x.lease", one) is False
    assert backend.remove("x.lease", three) is True
    assert list(tmp_path.iterdir()) == []


def test_a_held_lease_is_waited_for_every_two_seconds_then_named(
    backend: Backend,
) -> None:
    clock, said = Clock(), []
    first = lease(backend, clock, said)
    first.acquire()
    second = lease(backend, clock, said, wait=7)
    with pytest.raises(CommandError) as raised:
        second.acquire()
    assert clock.slept == [POLL, POLL, POLL, 1.0]
    holder = str(first.me)
    assert said == [
        f"Waiting for {holder} to finish writing to this destination (up to 7 s)..."
    ]
    assert str(raised.value) == (
        f"Another collectstatic is writing to this destination: {holder}, its "
        "lease renewed until 13:47:10 UTC. Waited 7 s (LEASE_WAIT); try again "
        "once it has finished."
    )
    assert holder.endswith("since 13:46:40 UTC")


def test_a_lease_that_ran_out_is_taken_over_and_its_holder_may_not_write(
    backend: Backend,
) -> None:
    clock, said = Clock(), []
    first = lease(backend, clock, said)
    first.acquire()
    assert first.holds()
    clock.now += TTL * 2 / 3 + 1  # no renewal: a third of its time left
    assert not first.holds()
    clock.now += TTL / 3
    second = lease(backend, clock, said)
    second.acquire()
    assert said == [
        f"Took over the lease of {first.me}: it ran out at 13:47:10 UTC (that "
        "run seems to have died)."
    ]
    first.renew()  # it was only slow: its next renewal finds the other's
    assert first.lost == "another run replaced it"
    with pytest.raises(CommandError) as raised:
        first.check()
    assert str(raised.value) == (
        "This run lost its lease on the destination (another run replaced "
        "it); the sync record was not written. Run collectstatic again."
    )
    first.release()  # leaves the other's alone
    stored = Holder.loads(backend.fetch("x.lease")[0])  # type: ignore[index]
    assert stored is not None and stored.id == second.me.id
    second.release()
    assert backend.fetch("x.lease") is None


def test_renewing_moves_the_end_of_the_lease(backend: Backend) -> None:
    clock, said = Clock(), []
    held = lease(backend, clock, said)
    held.acquire()
    clock.now += TTL / 3
    held.renew()
    stored = Holder.loads(backend.fetch("x.lease")[0])  # type: ignore[index]
    assert stored is not None and stored.until == clock.now + TTL
    clock.now += TTL / 2
    assert held.holds()


def test_a_lease_that_ran_out_says_why_renewing_failed_and_is_not_given_back(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service stopped answering: the run's line names what renewing
    met, and giving back a lease that ran out is not tried (it would hang
    on the same service; any run may take it over by then)."""
    clock, said = Clock(), []
    held = lease(backend, clock, said)
    held.acquire()

    def unreachable(*args: Any) -> Any:
        raise ConnectionRefusedError("the service does not answer")

    monkeypatch.setattr(backend, "replace", unreachable)
    monkeypatch.setattr(backend, "remove", unreachable)
    clock.now += TTL / 3
    held.renew()
    clock.now += TTL
    with pytest.raises(Stopped) as raised:
        held.guard()
    assert re.fullmatch(
        r"This run lost its lease on the destination \(it ran out at "
        r"\d\d:\d\d:\d\d UTC without renewal: ConnectionRefusedError: the "
        r"service does not answer\) and stopped writing",
        str(raised.value),
    ), str(raised.value)
    held.release()
    assert said == []
    assert backend.fetch("x.lease") is not None  # (run out: anyone's)


def test_what_is_not_a_lease_is_taken_over_without_a_word(backend: Backend) -> None:
    backend.create("x.lease", b"left by hand")
    clock, said = Clock(), []
    lease(backend, clock, said).acquire()
    assert said == []


def test_a_run_that_lost_its_lease_writes_no_record_and_deletes_nothing(
    tmp_path: Path, static_root: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = many(tmp_path / "src", 3)
    settings.STATICFILES_DIRS = [str(source)]
    root = static_root
    run_collectstatic()
    record = (root / RECORD).read_bytes()
    (source / "d0/f0.css").unlink()
    (source / "d1/f1.css").write_text("changed")
    monkeypatch.setattr(Lease, "holds", lambda self: False)
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(delete=True, stderr=stderr)
    assert str(raised.value).startswith("This run lost its lease on the destination")
    assert (root / RECORD).read_bytes() == record
    assert (root / "d0/f0.css").exists()
    assert not (root / (RECORD + ".lease")).exists()
    assert json.loads(record)["files"]  # the previous record, untouched


class RenamingStorage(RemoteLikeStorage):
    """Saves everything under another name (as Django's test storages do)."""

    def _save(self, name: str, content: Any) -> str:
        return super()._save("renamed-" + name, content)


class WriteOnlyStorage(RemoteLikeStorage):
    """Keeps what it is given but cannot give it back."""

    def _open(self, name: str, mode: str = "rb") -> Any:
        raise NotImplementedError("write only")


@pytest.mark.parametrize("storage", [RenamingStorage, WriteOnlyStorage])
def test_a_storage_that_does_not_give_back_what_it_saved_runs_without_a_lease(
    tmp_path: Path, storage: type[RemoteLikeStorage]
) -> None:
    """Stock would run on it: so do we, unfenced, leaving no lease behind."""
    clock, said = Clock(), []
    held = lease(Backend(storage(str(tmp_path))), clock, said)
    held.acquire()
    assert held.unheld == "the storage does not give back what it saved"
    assert not held.holds() and clock.slept == [] and said == []
    held.check()  # no CommandError: nothing to fence
    held.release()
    assert list(tmp_path.iterdir()) == []


def test_a_holder_gone_from_this_process_table_is_taken_over_at_once(
    backend: Backend,
) -> None:
    """Killed on this machine: no wait for its time to run out. The same pid
    from another boot or PID namespace, or a live one, is waited for."""
    import subprocess
    import sys

    from collectstatic_plus.lease import process_table

    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    clock, said = Clock(), []
    for processes, pid, taken in [
        ("another boot/pid:[1]", ended.pid, False),
        (process_table(), os.getpid(), False),
        (process_table(), ended.pid, True),
    ]:
        holder = Holder("x", "h", pid, clock.now, clock.now + TTL, processes)
        found = backend.fetch("x.lease")
        if found is not None:  # the last holder's
            backend.remove("x.lease", found[1])
        backend.create("x.lease", holder.dumps())
        waiting = lease(backend, clock, said, wait=0 if not taken else 10)
        if taken:
            waiting.acquire()
            assert said[-1] == (
                f"Took over the lease of {holder}: that process has ended "
                "without giving it back."
            )
        else:
            with pytest.raises(CommandError):
                waiting.acquire()
    assert process_table().startswith(
        Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    )


def test_a_lease_that_is_refused_yet_never_there_fails_in_one_line(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that answers every create "exists" and every read "none"
    (a misread error) stops the run instead of spinning."""
    monkeypatch.setattr(backend, "create", lambda name, data: None)
    monkeypatch.setattr(backend, "fetch", lambda name: None)
    with pytest.raises(CommandError) as raised:
        lease(backend, Clock(), []).acquire()
    assert str(raised.value) == (
        "Could not take the lease 'x.lease': the destination neither accepts "
        "it nor shows one there."
    )


def test_a_lease_whose_answer_was_lost_is_known_as_ours(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create landed, its answer did not: the retry finds the lease
    taken, by this very run, and holds it (no wait, no takeover)."""
    create, lost = backend.create, []

    def create_then_lose_the_answer(name: str, data: bytes) -> str | None:
        version = create(name, data)
        if not lost:
            lost.append(version)
            raise ConnectionResetError("the answer was lost")
        return version

    monkeypatch.setattr(backend, "create", create_then_lose_the_answer)
    clock, said = Clock(), []
    held = Lease(backend, Retry(sleep=clock.sleep), "x.lease", TTL, 0, said.append)
    held.acquire()
    assert held.version == lost[0] and held.holds()
    assert said == [] and held.lost is None and clock.slept  # retried once
    held.release()
    assert backend.fetch("x.lease") is None


def test_a_renewal_that_cannot_read_the_lease_back_tries_again_later(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewing thread never dies of an error: the next beat tries again."""
    clock, said = Clock(), []
    held = lease(backend, clock, said)
    held.acquire()
    monkeypatch.setattr(backend, "replace", lambda name, data, version: None)

    def unreachable(name: str) -> None:
        raise ConnectionRefusedError("down")

    monkeypatch.setattr(backend, "fetch", unreachable)
    held.retry = Retry(attempts=1)
    held.renew()  # no exception
    assert held.lost is None


def test_ctrl_c_while_taking_the_lease_gives_it_back_and_says_so(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, said = Clock(), []
    taking = lease(backend, clock, said)

    def interrupted() -> None:
        Lease.acquire(taking)
        raise KeyboardInterrupt

    monkeypatch.setattr(taking, "acquire", interrupted)
    with pytest.raises(CommandError) as raised:
        taking.__enter__()
    assert str(raised.value) == (
        "Interrupted while taking the lease; nothing was written."
    )
    assert raised.value.returncode == 130
    assert backend.fetch("x.lease") is None  # given back


@pytest.mark.parametrize("parallel", [None, 2])
def test_a_run_that_loses_its_lease_midway_writes_nothing_more(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    parallel: Any,
) -> None:
    """Another run may hold the lease now: no file, manifest or record of
    this run's may land over its work."""
    source = many(tmp_path / "src", 20)
    settings.STATICFILES_DIRS = [str(source)]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        },
    }
    real = Lease.holds
    monkeypatch.setattr(
        Lease,
        "holds",
        lambda self: real(self) and len(list(static_root.rglob("*.css"))) < 5,
    )
    with pytest.raises(CommandError) as raised:
        run_collectstatic(parallel=parallel)
    assert re.fullmatch(
        r"This run lost its lease on the destination \(it ran out at "
        r"\d\d:\d\d:\d\d UTC without renewal\) and stopped writing; \d+ of 20 "
        r"files were not collected\.",
        str(raised.value),
    ), str(raised.value)
    written = sorted(static_root.rglob("*.css"))
    assert 5 <= len(written) <= 5 + (parallel or 1) * 2  # (those in flight)
    assert not (static_root / RECORD).exists()
    assert not (static_root / "staticfiles.json").exists()


@pytest.mark.parametrize("until", ["1e400", "NaN"])
def test_a_lease_that_runs_out_never_is_no_lease(backend: Backend, until: str) -> None:
    """A lease edited to last forever (or to no time at all) is not one of
    ours: taken over without a word, not a traceback."""
    clock, said = Clock(), []
    data = (
        Holder("x", "elsewhere", 1, 0.0, 0.0)
        .dumps()
        .replace(b'"until": 0.0', b'"until": ' + until.encode())
    )
    assert backend.create("x.lease", data) is not None
    assert Holder.loads(data) is None
    with lease(backend, clock, said):
        pass
    assert said == []


def test_of_two_runs_taking_over_a_dead_lease_at_once_one_wins(
    tmp_path: Path,
) -> None:
    """On local disk the take-over (read, compare, rename) is one step among
    the runs on this machine."""
    import threading
    import time

    doubles = 0
    for trial in range(100):
        backend = LocalBackend(FileSystemStorage(location=str(tmp_path / str(trial))))
        dead = Holder("dead", "elsewhere", 1, 0.0, time.time() - 10).dumps()
        backend.create("x.lease", dead)
        start = threading.Barrier(2)
        held: list[Lease] = []

        def take(
            backend: Backend = backend, start: Any = start, held: list[Lease] = held
        ) -> None:
            taker = Lease(backend, Retry(), "x.lease", 30, 0, lambda line: None)
            start.wait()
            with contextlib.suppress(CommandError):  # the loser: held by the other
                taker.acquire()
                held.append(taker)

        threads = [threading.Thread(target=take) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        doubles += len([taker for taker in held if taker.holds()]) > 1
    assert doubles == 0
