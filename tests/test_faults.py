"""Faults: a flaky S3 (through a fault-injecting proxy) and killed runs.

S3 goes through :mod:`tests.servers.fault_proxy` in front of moto's server:
seeded transient faults, one key that always fails, a throttled burst and
scripted single faults. Killed runs (SIGKILL and SIGINT at seeded random
points, for S3Storage, S3ManifestStaticStorage and the local
ManifestStaticFilesStorage) are each followed by a clean run, and the
destination must then equal the one a history of clean runs gives.

The seed is ``FAULT_SEED`` (environment) or a fixed default. Each test
records what it injected and found with pytest's ``record_property``
(``faults``, ``bytes_lost``, ``kill_trials``, ``note``); the fault figures
are a benchmark's to sum and print (``python -m benchmarks.faults``).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError
from django.test import override_settings

from .buckets import RECORD, S3, S3_MANIFEST, Bucket, keys_of
from .conftest import (
    default_sigint,
    read_tree,
    record_files,
    run_collectstatic,
    use,
    write_tree,
)
from .servers.fault_proxy import KINDS, FaultProxy
from .servers.s3 import S3Server

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("FAULT_SEED", "1"))
#: Kill trials per storage.
TRIALS = 20
#: Seconds each save sleeps in a killed run, so that kills land mid-run.
SLOW_DELAY = 0.06
#: Seconds a run may take to stop after SIGINT (it finishes uploads in flight).
SIGINT_GRACE = 30.0
WORKERS = 4


# Storages for killed runs ---------------------------------------------------

#: The body of the settings module of a killed run. Its storages (the class
#: named in STORAGES, built on first use on the class it names in BASES) add
#: to every save an event (a line in ``$FAULT_EVENTS``; "init" when the
#: storage is created) and a sleep of ``$FAULT_SLOW_DELAY`` seconds before
#: writing, so that kills land mid-run; not for the sync record and the
#: manifest, whose writes last microseconds in a real run (one request, one
#: small file). ``$FAULT_PAUSE_ON=NAME=SECONDS`` makes the save of NAME sleep
#: that long. On local disk these go in FileSystemStorage's own _save (a
#: storage with a _save of its own is post-processed as stock writes, not
#: beside the name and renamed over it). Without these variables (in the
#: test process) they are the storages they extend, counting saves.
#: Kept out of this module so that a killed run does not import pytest and
#: the tests.
KILL_POINTS = """
import importlib
import os
import time

from tests.settings import *  # noqa: F403

BASES = {
    "KilledS3Storage": ("storages.backends.s3", "S3Storage"),
    "KilledS3ManifestStorage": ("storages.backends.s3", "S3ManifestStaticStorage"),
    "KilledManifestStorage": (
        "django.contrib.staticfiles.storage",
        "ManifestStaticFilesStorage",
    ),
}


def _event(name):
    path = os.environ.get("FAULT_EVENTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, name.encode() + b"\\n")
        finally:
            os.close(fd)


class Created:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _event("init")


def _before_save(storage, name):
    _event(name)
    paused, _, seconds = os.environ.get("FAULT_PAUSE_ON", "").partition("=")
    manifest = getattr(storage, "manifest_name", None)
    quick = name.startswith(".collectstatic-plus") or (
        manifest is not None and (name == manifest or name.startswith(manifest + "."))
    )
    if paused and (name == paused or name.startswith(paused + ".")):
        time.sleep(float(seconds))
    elif not quick:
        time.sleep(float(os.environ.get("FAULT_SLOW_DELAY", "0")))


class KillPoints(Created):
    saves = 0

    def _save(self, name, content):
        KillPoints.saves += 1
        _before_save(self, name)
        return super()._save(name, content)


def on_local_disk(save):
    # FileSystemStorage's own _save with the kill points: post-processing
    # writes beside a file's name and renames it over (as it does for a
    # storage without a _save of its own) only through that one.
    def _save(self, name, content):
        KillPoints.saves += 1
        _before_save(self, name)
        return save(self, name, content)

    return _save


def __getattr__(name):
    if name not in BASES:
        raise AttributeError(name)
    module, base = BASES[name]
    parent = getattr(importlib.import_module(module), base)
    local = module.startswith("django.")
    if local and "FAULT_EVENTS" in os.environ:  # a killed run (the test's
        # process patches it while it runs one: Runner.collect)
        from django.core.files.storage import FileSystemStorage

        FileSystemStorage._save = on_local_disk(FileSystemStorage._save)
    # (The same class in both: its code is part of post-processing's key.)
    bases = (Created, parent) if local else (KillPoints, parent)
    cls = type(name, bases, {"__module__": __name__})
    globals()[name] = cls
    return cls
"""


# Trees and change sets ------------------------------------------------------


def tree_files(rng: random.Random) -> dict[str, bytes | str]:
    """40 files: CSS that imports CSS and references images, JS, images, text."""
    files: dict[str, bytes | str] = {}
    for n in range(12):
        files[f"img/i{n}.png"] = b"\x89PNG\r\n" + rng.randbytes(rng.randint(40, 400))
    for n in range(4):
        files[f"fonts/f{n}.woff2"] = rng.randbytes(rng.randint(100, 800))
    for n in range(10):
        files[f"css/c{n}.css"] = css(rng, n)
    for n in range(10):
        files[f"js/j{n}.js"] = f"var j{n} = {rng.randint(0, 10**9)};\n"
    for n in range(4):
        files[f"misc/t{n}.txt"] = f"{rng.random()}\n" * rng.randint(1, 20)
    return files


def css(rng: random.Random, n: int) -> str:
    lines = []
    if n and rng.random() < 0.5:
        lines.append(f"@import url('c{rng.randrange(n)}.css');")
    for _ in range(rng.randint(1, 3)):
        image = rng.randrange(12)
        lines.append(f".c{n}-{image} {{ background: url('../img/i{image}.png'); }}")
    lines.append(f"/* {rng.random()} */")
    return "\n".join(lines) + "\n"


def change(source: Path, rng: random.Random, label: str) -> list[str]:
    """Modify a few files, sometimes add or delete one; the paths touched."""
    names = sorted(read_tree(source))
    touched = rng.sample(names, rng.randint(2, 6))
    for name in touched:
        path = source / name
        if name.endswith(".css"):
            path.write_text(css(rng, int(re.findall(r"\d+", name)[0])))
        elif name.endswith((".png", ".woff2")):
            path.write_bytes(
                path.read_bytes()[:6] + rng.randbytes(rng.randint(40, 400))
            )
        else:
            path.write_text(f"/* {label} */ var x = {rng.random()};\n")
    extras = [name for name in names if name.startswith("extra/")]
    if extras and rng.random() < 0.3:
        victim = rng.choice(extras)
        (source / victim).unlink()
        touched.append(victim)
    if rng.random() < 0.5:
        added = f"extra/{label}.txt"
        write_tree(source, {added: f"added in {label}\n"})
        touched.append(added)
    return touched


# Destinations ---------------------------------------------------------------


@dataclass
class Destination:
    """A bucket or a directory, with the storage setting that writes there."""

    backend: str
    root: Path
    bucket: Bucket | None = None

    @property
    def storage(self) -> dict[str, Any]:
        if self.bucket is not None:
            return self.bucket.storage(self.backend)
        return {"BACKEND": self.backend}

    def contents(self) -> dict[str, bytes]:
        """Every file but the sync record (and its temporary files)."""
        if self.bucket is not None:
            found = self.bucket.contents()
        else:
            found = read_tree(self.root) if self.root.exists() else {}
        return {k: v for k, v in found.items() if not k.startswith(RECORD)}

    def leftovers(self) -> list[str]:
        """Temporary sync records left behind (a kill between write and rename);
        not the lease a killed run leaves (the next run takes it over)."""
        if self.bucket is not None or not self.root.exists():
            return []
        names = (p.name for p in self.root.glob(RECORD + ".*"))
        return sorted(name for name in names if not name.endswith(".lease"))

    def digests(self) -> dict[str, str]:
        """MD5 of every file but the sync record: ETags on S3 (single PUTs)."""
        if self.bucket is not None:
            return self.bucket.etags()
        return {k: hashlib.md5(v).hexdigest() for k, v in self.contents().items()}

    def get(self, name: str) -> bytes | None:
        if self.bucket is not None:
            return self.bucket.get(name) if name in self.bucket.etags() else None
        path = self.root / name
        return path.read_bytes() if path.is_file() else None


def settings_module(
    directory: Path, name: str, destination: Destination, source: Path
) -> None:
    """The settings module of a killed run, with its storages."""
    (directory / f"{name}.py").write_text(
        KILL_POINTS
        + f"\nSTATIC_ROOT = {str(destination.root)!r}\n"
        + f"STATICFILES_DIRS = [{str(source)!r}]\n"
        + f"STORAGES = {{**STORAGES, 'staticfiles': {destination.storage!r}}}\n"
    )


def collect_into(destination: Destination, source: Path, **options: Any) -> None:
    """One clean run in this process, as the killed run was configured."""
    from django.conf import settings

    with override_settings(
        STATIC_ROOT=str(destination.root),
        STATICFILES_DIRS=[str(source)],
        STORAGES={**settings.STORAGES, "staticfiles": destination.storage},
    ):
        options.setdefault("parallel", WORKERS)
        options.setdefault("verbosity", 0)
        run_collectstatic(**options)


HASHED = re.compile(r"\.([0-9a-f]{12})(\.[^./]+)?$")


def manifest_problems(destination: Destination) -> list[str]:
    """What is wrong with the published manifest: missing or torn files.

    A hashed name carries the MD5 of its content (Django hashes the final,
    rewritten content), so a file that is there with other bytes is torn.
    """
    raw = destination.get("staticfiles.json")
    if raw is None:
        return ["no manifest is published"]
    try:
        paths = json.loads(raw)["paths"]
    except (ValueError, KeyError) as error:
        return [f"the manifest is not readable: {error!r}"]
    digests = destination.digests()
    problems = []
    for original, hashed in sorted(paths.items()):
        match = HASHED.search(hashed)
        if hashed not in digests:
            problems.append(f"{original} -> {hashed}: missing")
        elif match and digests[hashed][:12] != match.group(1):
            problems.append(f"{original} -> {hashed}: content of another version")
    return problems


def bytes_lost(expected: dict[str, bytes], found: dict[str, bytes]) -> int:
    """Bytes of the expected files that are missing or different."""
    return sum(len(data) for name, data in expected.items() if found.get(name) != data)


# Figures --------------------------------------------------------------------

Record = Callable[[str, object], None]


def record_faults(record: Record, name: str, snapshot: dict[str, Any]) -> None:
    """What the proxy injected during a test, for benchmarks/faults.py."""
    record(
        "faults",
        {
            "name": name,
            "requests": snapshot["requests"],
            "forwarded": snapshot["forwarded"],
            "faults": snapshot["faults"],
        },
    )


# The fault proxy ------------------------------------------------------------

CALM = {
    "fault_rate": 0.0,
    "seed": SEED,
    "fail_keys": [],
    "throttle_seconds": 0.0,
    "throttle_on": "*",
    "script": [],
    "kinds": list(KINDS),
}


@pytest.fixture(scope="module")
def fault_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_server.port, seed=SEED).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> FaultProxy:
    """The proxy, calm (no faults) and with its counts at zero."""
    fault_proxy.configure(**CALM)
    fault_proxy.reset()
    return fault_proxy


def through(proxy: FaultProxy, bucket: Bucket, backend: str, **options: Any) -> Any:
    return bucket.storage(backend, endpoint_url=proxy.endpoint_url, **options)


def static_tree(tmp_path: Path, settings: Any, rng: random.Random) -> Path:
    """The files of ``tree_files(rng)`` in ``tmp_path/src``, the runs' source."""
    source = write_tree(tmp_path / "src", tree_files(rng))
    settings.STATICFILES_DIRS = [str(source)]
    return source


def bucket_through(
    proxy: FaultProxy,
    s3_server: S3Server,
    settings: Any,
    backend: str = S3,
    **options: Any,
) -> Bucket:
    """A fresh bucket, which the runs write to through the proxy."""
    bucket = Bucket(s3_server)
    use(settings, through(proxy, bucket, backend, **options))
    return bucket


def sdk_without_retries() -> dict[str, Any]:
    """Storage options under which botocore tries each request once."""
    from botocore.config import Config

    return {"client_config": Config(retries={"total_max_attempts": 1})}


@dataclass
class Outcome:
    stdout: str
    stderr: str
    error: CommandError | None


def collect(**options: Any) -> Outcome:
    """Run in this process; a CommandError is the non-zero exit, kept."""
    stdout, stderr = io.StringIO(), io.StringIO()
    options.setdefault("verbosity", 0)
    try:
        run_collectstatic(stdout=stdout, stderr=stderr, **options)
    except CommandError as error:
        return Outcome(stdout.getvalue(), stderr.getvalue(), error)
    return Outcome(stdout.getvalue(), stderr.getvalue(), None)


# Transient faults -----------------------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize(
    "backend", [S3, S3_MANIFEST], ids=["S3Storage", "S3ManifestStaticStorage"]
)
def test_transient_faults_leave_the_bucket_a_fault_free_run_leaves(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    backend: str,
    record_property: Record,
) -> None:
    rng = random.Random(f"{SEED}-transient-{backend}")
    # Three trees, 120 files: enough requests that 5 % of them is some.
    source = tmp_path / "src"
    for part in ("one", "two", "three"):
        write_tree(source / part, tree_files(rng))
    settings.STATICFILES_DIRS = [str(source)]
    faulty, calm = Bucket(s3_server), Bucket(s3_server)
    proxy.configure(fault_rate=0.05)
    lost = 0
    for step in ("cold", "changed"):
        if step == "changed":
            change(source, rng, "changed")
        use(settings, calm.storage(backend))
        assert collect(parallel=8).error is None
        use(settings, through(proxy, faulty, backend))
        outcome = collect(parallel=8, verbosity=1)  # warnings on stderr
        assert outcome.error is None, (step, outcome.stderr, proxy.faults()["events"])
        expected, found = calm.contents(), faulty.contents()
        lost += bytes_lost(expected, found)
        assert sorted(found) == sorted(expected)
        assert found == expected
        if outcome.stderr:
            record_property("note", f"{backend} {step} run warned: {outcome.stderr!r}")
    snapshot = proxy.faults()
    record_faults(
        record_property, f"transient 5% {backend.rsplit('.', 1)[1]}", snapshot
    )
    record_property("bytes_lost", lost)
    assert snapshot["transient"] > 0, snapshot
    assert lost == 0


@pytest.mark.s3
def test_a_failing_key_fails_alone_and_the_next_run_uploads_only_it(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    record_property: Record,
) -> None:
    source = static_tree(tmp_path, settings, random.Random(f"{SEED}-failing-key"))
    bucket, bad = bucket_through(proxy, s3_server, settings), "css/c3.css"
    proxy.configure(fail_keys=[bad])

    outcome = collect(parallel=8)
    assert outcome.error is not None
    assert outcome.error.returncode == 1
    assert str(outcome.error) == f"1 static file could not be collected: {bad}."
    assert outcome.stderr.splitlines() == [
        f"Could not collect '{bad}': InvalidRequest: An error occurred "
        "(InvalidRequest) when calling the PutObject operation: Injected "
        "failure for this key."
    ]
    expected = read_tree(source)
    assert bucket.contents() == {k: v for k, v in expected.items() if k != bad}
    record = json.loads(bucket.get(RECORD))
    assert sorted(record_files(record)) == sorted(set(expected) - {bad})
    record_faults(record_property, "failing key", proxy.faults())

    proxy.configure(fail_keys=[])
    s3_server.reset_requests()
    assert collect(parallel=8).error is None
    assert keys_of(s3_server.requests(), "PUT", bucket.name) == sorted([bad, RECORD])
    assert bucket.contents() == expected
    assert bad in record_files(json.loads(bucket.get(RECORD)))


def ride_out_a_burst(
    proxy: FaultProxy, throttle_on: str = "*", verbosity: int = 0
) -> None:
    """A run whose first second is throttled (503 SlowDown to every request,
    or to every one of method ``throttle_on``) must succeed all the same."""
    proxy.configure(throttle_seconds=1.0, throttle_on=throttle_on)
    outcome = collect(parallel=8, verbosity=verbosity)
    assert outcome.error is None, outcome.stderr


def check_throttled(
    proxy: FaultProxy, name: str, at_least: int, record: Record
) -> None:
    """The runs met ``at_least`` throttled requests; the figures ``name`` them."""
    snapshot = proxy.faults()
    record_faults(record, name, snapshot)
    assert snapshot["faults"].get("throttle", 0) >= at_least, snapshot


@pytest.mark.s3
def test_a_throttled_burst_is_ridden_out(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    record_property: Record,
) -> None:
    rng = random.Random(f"{SEED}-burst")
    source = static_tree(tmp_path, settings, rng)
    bucket = bucket_through(proxy, s3_server, settings)
    ride_out_a_burst(proxy)
    change(source, rng, "burst")
    ride_out_a_burst(proxy)  # a second burst, for the change
    check_throttled(proxy, "throttled bursts", 2, record_property)
    assert bucket.contents() == read_tree(source)


@pytest.mark.s3
def test_a_throttled_burst_during_the_uploads_is_ridden_out_by_the_package(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    record_property: Record,
) -> None:
    """botocore tries each request once: our retries (8 attempts, about 6 s
    of backoff at least) and the throttle that halves the workers must do."""
    source = static_tree(tmp_path, settings, random.Random(f"{SEED}-up"))
    settings.COLLECTSTATIC_PLUS = {"RETRIES": 8}
    bucket = bucket_through(proxy, s3_server, settings, **sdk_without_retries())
    ride_out_a_burst(proxy, throttle_on="PUT", verbosity=1)
    check_throttled(proxy, "throttled burst on the uploads", 8, record_property)
    assert bucket.contents() == read_tree(source)


# The retry layer on its own (botocore trying each request once) -------------


@pytest.mark.s3
def test_a_record_that_cannot_be_read_for_a_moment_is_not_trusted(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    record_property: Record,
) -> None:
    rng = random.Random(f"{SEED}-record-read")
    source = static_tree(tmp_path, settings, rng)
    bucket = bucket_through(proxy, s3_server, settings, **sdk_without_retries())
    assert collect(parallel=4).error is None
    change(source, rng, "record-read")
    proxy.configure(script=[{"method": "GET", "key": RECORD, "kinds": ["internal"]}])
    outcome = collect(parallel=4, verbosity=1)
    assert outcome.error is None, outcome.stderr
    assert proxy.faults()["faults"] == {"internal": 1}
    assert bucket.contents() == read_tree(source)
    record_faults(record_property, "record read", proxy.faults())
    if outcome.stderr:
        record_property("note", f"one 500 on the record read: {outcome.stderr.strip()}")
    assert outcome.stdout.endswith(" unmodified.\n"), outcome.stdout


NOT_RETRIED = (
    "package bug: {call} is not wrapped in the retry layer ({where}), so one "
    "transient error fails the run although RETRIES allows more attempts"
)
SINGLE_FAULTS = [
    pytest.param(
        S3,
        {"method": "PUT", "key": "css/c1.css", "kinds": ["internal"]},
        id="upload",
    ),
    pytest.param(
        S3,
        {"method": "GET", "key": RECORD, "kinds": ["internal"]},
        id="sync record read",
    ),
    pytest.param(
        S3,
        {"method": "GET", "key": "", "query": "list-type", "kinds": ["slowdown"]},
        id="listing",
    ),
    pytest.param(
        S3_MANIFEST,
        {"method": "PUT", "key": "staticfiles.json", "kinds": ["internal"]},
        id="manifest",
    ),
    pytest.param(
        S3_MANIFEST,
        {"method": "PUT", "key": "*", "skip": 40, "kinds": ["drop"]},
        id="hashed file",
    ),
    pytest.param(
        S3, {"method": "PUT", "key": RECORD, "kinds": ["lost"]}, id="sync record"
    ),
]


@pytest.mark.s3
@pytest.mark.parametrize(("backend", "rule"), SINGLE_FAULTS)
def test_one_transient_fault_is_retried_by_the_package(
    tmp_path: Path,
    settings: Any,
    s3_server: S3Server,
    proxy: FaultProxy,
    backend: str,
    rule: dict[str, Any],
    request: pytest.FixtureRequest,
    record_property: Record,
) -> None:
    """With botocore's retries off, one fault must be absorbed by ours."""
    where = request.node.callspec.id
    static_tree(tmp_path, settings, random.Random(f"{SEED}-one"))
    calm = Bucket(s3_server)
    use(settings, calm.storage(backend))
    assert collect(parallel=4).error is None
    bucket = bucket_through(
        proxy, s3_server, settings, backend, **sdk_without_retries()
    )
    proxy.configure(script=[rule])
    try:
        outcome = collect(parallel=4, verbosity=1)  # warnings on stderr
    except Exception as error:  # not even a CommandError: a traceback
        raise AssertionError(f"the run crashed: {error!r}") from error
    finally:
        record_faults(record_property, f"single fault: {where}", proxy.faults())
    assert proxy.faults()["transient"] == 1
    assert outcome.error is None, outcome.stderr
    assert outcome.stderr == ""
    assert bucket.contents() == calm.contents()


# Killed runs ----------------------------------------------------------------

KILL_CASES = [
    pytest.param("KilledS3Storage", id="S3Storage", marks=pytest.mark.s3),
    pytest.param(
        "KilledS3ManifestStorage", id="S3ManifestStaticStorage", marks=pytest.mark.s3
    ),
    pytest.param("KilledManifestStorage", id="ManifestStaticFilesStorage"),
]


@dataclass
class KilledRun:
    signal: str
    #: None when the run had finished before the signal was sent.
    returncode: int | None
    events: list[str]
    stderr: str


class Runner:
    """Runs collectstatic in a child process and signals it at a chosen event.

    ``killed`` is where the child writes, ``clean`` a destination of the same
    storage class for runs in this process that are not interrupted.
    """

    def __init__(
        self,
        tmp_path: Path,
        storage: str,
        source: Path,
        request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        module = f"fault_kill_{uuid.uuid4().hex[:12]}"
        backend = f"{module}.{storage}"
        if "S3" in storage:
            server: S3Server = request.getfixturevalue("s3_server")
            self.killed = Destination(backend, tmp_path / "unused", Bucket(server))
            self.clean = Destination(backend, tmp_path / "unused", Bucket(server))
        else:
            self.killed = Destination(backend, tmp_path / "killed")
            self.clean = Destination(backend, tmp_path / "clean")
        self.source = source
        settings_module(tmp_path, module, self.killed, source)
        monkeypatch.syspath_prepend(str(tmp_path))
        self.module = importlib.import_module(module)
        self.points = self.module.KillPoints
        self.events = tmp_path / "events"
        self.stderr = tmp_path / "stderr"
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
            "DJANGO_SETTINGS_MODULE": module,
            "FAULT_EVENTS": str(self.events),
            "FAULT_SLOW_DELAY": str(SLOW_DELAY),
        }
        self.argv = [
            sys.executable,
            *("-m", "django", "collectstatic", "--noinput"),
            *("--parallel", str(WORKERS), "-v", "0"),
        ]

    def collect(self, destination: Destination) -> int:
        """A clean run in this process; the number of saves it made."""
        self.points.saves = 0
        save = self.module.on_local_disk(FileSystemStorage._save)
        with mock.patch.object(FileSystemStorage, "_save", save):
            collect_into(destination, self.source)
        return int(self.points.saves)

    def seen(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []

    def kill(
        self,
        sig: signal.Signals,
        after: int | str,
        pause: float,
        env: dict[str, str] | None = None,
    ) -> KilledRun:
        """Signal the run ``pause`` seconds after event ``after`` (a count of
        events, or a name) started, then wait (bounded) for it to end."""
        self.events.write_bytes(b"")
        with open(self.stderr, "wb") as stderr:
            process = subprocess.Popen(
                self.argv,
                env={**self.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=default_sigint,
            )
            try:
                deadline = time.monotonic() + 60
                while process.poll() is None:
                    seen = self.seen()
                    if (
                        any(e == after or e.startswith(after + ".") for e in seen)
                        if isinstance(after, str)
                        else len(seen) > after
                    ):
                        time.sleep(pause)
                        break
                    assert time.monotonic() < deadline, f"never saw event {after}"
                    time.sleep(0.005)
                finished = process.poll() is not None
                if not finished:
                    process.send_signal(sig)
                try:
                    process.wait(timeout=SIGINT_GRACE)
                except subprocess.TimeoutExpired:
                    raise AssertionError(
                        f"still running {SIGINT_GRACE} s after {sig.name}"
                    ) from None
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        return KilledRun(
            sig.name,
            None if finished else process.returncode,
            self.seen(),
            self.stderr.read_text(errors="replace"),
        )


def differences(expected: dict[str, str], found: dict[str, str]) -> dict[str, Any]:
    return {
        "missing": sorted(set(expected) - set(found)),
        "extra": sorted(set(found) - set(expected)),
        "different": sorted(
            name for name in expected if name in found and found[name] != expected[name]
        ),
    }


@pytest.mark.parametrize("storage", KILL_CASES)
def test_killed_runs_then_a_clean_run_give_what_clean_runs_give(
    tmp_path: Path,
    storage: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Record,
) -> None:
    case = request.node.callspec.id
    rng = random.Random(f"{SEED}-kill-{case}")
    source = write_tree(tmp_path / "src", tree_files(rng))
    runner = Runner(tmp_path, storage, source, request, monkeypatch)
    killed, clean = runner.killed, runner.clean
    manifest = "Manifest" in storage
    stats: Counter[str] = Counter()
    runner.collect(clean)
    runner.collect(killed)
    leftovers: set[str] = set()
    for trial in range(TRIALS):
        change(source, rng, f"t{trial}")
        # The killed run starts where the clean one did: it makes the same saves.
        saves = runner.collect(clean)
        # Event 0 is the storage being created, event k the start of save k.
        after = rng.randint(0, saves)
        pause = rng.uniform(0, 1.5 * SLOW_DELAY)
        sig = signal.SIGKILL if trial % 2 == 0 else signal.SIGINT
        run = runner.kill(sig, after, pause)
        where = f"trial {trial}: {sig.name} {pause:.3f} s after event {after}"
        stats["trials"] += 1
        stats[sig.name] += 1
        stats["finished first" if run.returncode is None else "stopped mid-run"] += 1
        if manifest:
            problems = manifest_problems(killed)
            assert problems == [], (where, run.events, run.stderr)
            stats["manifest checks"] += 1
        new = set(killed.leftovers()) - leftovers
        stats["temporary records left"] += len(new)
        leftovers |= new

        runner.collect(killed)
        expected, found = clean.digests(), killed.digests()
        if found != expected:
            lost = bytes_lost(clean.contents(), killed.contents())
            record_property("kill_trials", {case: dict(stats)})
            record_property("bytes_lost", lost)
            raise AssertionError(
                f"{where}: {differences(expected, found)}, {lost} bytes lost; "
                f"events {run.events}; stderr {run.stderr[-2000:]}"
            )
    record_property("kill_trials", {case: dict(stats)})
    record_property("bytes_lost", 0)
    final, current = killed.contents(), read_tree(source)
    assert final == clean.contents()
    assert {name: final.get(name) for name in current} == current
    if manifest:
        assert manifest_problems(killed) == []


MANIFEST_WINDOW = [
    pytest.param(
        "KilledManifestStorage",
        id="ManifestStaticFilesStorage",
    ),
    pytest.param(
        "KilledS3ManifestStorage", id="S3ManifestStaticStorage", marks=pytest.mark.s3
    ),
]


@pytest.mark.parametrize("storage", MANIFEST_WINDOW)
def test_a_kill_while_the_manifest_is_written_leaves_the_previous_one(
    tmp_path: Path,
    storage: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(f"{SEED}-manifest-window")
    source = write_tree(tmp_path / "src", tree_files(rng))
    runner = Runner(tmp_path, storage, source, request, monkeypatch)
    runner.collect(runner.killed)
    before = runner.killed.get("staticfiles.json")
    change(source, rng, "window")
    run = runner.kill(
        signal.SIGKILL,
        after="staticfiles.json",
        pause=0.3,
        env={"FAULT_PAUSE_ON": "staticfiles.json=5", "FAULT_SLOW_DELAY": "0"},
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert manifest_problems(runner.killed) == []
    assert runner.killed.get("staticfiles.json") == before


def test_ctrl_c_while_the_last_files_are_in_flight_stops_cleanly(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"{SEED}-last-files")
    source = write_tree(tmp_path / "src", tree_files(rng))
    runner = Runner(tmp_path, "KilledManifestStorage", source, request, monkeypatch)
    runner.collect(runner.killed)
    changed = [name for name in change(source, rng, "last") if (source / name).exists()]
    # Fewer files than the pool queues: all are submitted at once, and the
    # main thread waits for them when the signal comes.
    assert len(changed) < WORKERS * 5
    run = runner.kill(signal.SIGINT, after=1, pause=0.5, env={"FAULT_SLOW_DELAY": "2"})
    assert run.returncode == 130, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("CommandError: Interrupted: ")
    record = record_files(json.loads((runner.killed.root / RECORD).read_bytes()))
    landed = read_tree(runner.killed.root)
    assert all(
        record[name]["md5"] == hashlib.md5(landed[name]).hexdigest()
        for name in changed
        if name in landed and name in record
    )
