"""``--parallel``: same results as serial, N files at a time, no error lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError

from collectstatic_plus.conf import LOCAL_WORKERS, REMOTE_WORKERS
from collectstatic_plus.pool import TransferPool

from .conftest import (
    default_sigint,
    read_tree,
    run_collectstatic,
    stock_view,
    wait_until,
    write_tree,
)
from .storages import ConcurrencyProbe

REPO = Path(__file__).resolve().parents[1]


def many_files(root: Path, count: int) -> Path:
    return write_tree(
        root,
        {f"dir{i % 7}/sub{i % 3}/file{i}.js": f"var f{i};\n" for i in range(count)},
    )


def use_storage(settings: Any, backend: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}


@pytest.fixture
def probe() -> ConcurrencyProbe:
    ConcurrencyProbe.reset()
    return ConcurrencyProbe()


@pytest.mark.parametrize("parallel", [4, "auto"])
@pytest.mark.parametrize(
    "backend",
    [
        "django.contrib.staticfiles.storage.StaticFilesStorage",
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
        "tests.storages.RemoteLikeStorage",
    ],
)
def test_parallel_result_equals_serial(
    sources: Path,
    static_root: Path,
    settings: Any,
    tmp_path: Path,
    backend: str,
    parallel: object,
) -> None:
    many_files(sources / "many", 60)
    use_storage(settings, backend)
    serial = run_collectstatic(verbosity=2)
    serial_tree = read_tree(static_root)
    os.rename(static_root, tmp_path / "serial")
    threaded = run_collectstatic(verbosity=2, parallel=parallel)

    assert read_tree(static_root) == serial_tree
    serial_lines = stock_view(serial.stdout).splitlines()
    threaded_lines = stock_view(threaded.stdout).splitlines()
    # Lines may come in another order, but none is lost or repeated,
    # and the summary line stays last.
    assert Counter(threaded_lines) == Counter(serial_lines)
    assert threaded_lines[-1] == serial_lines[-1]
    assert "67 static files copied" in threaded_lines[-1]


def test_parallel_rerun_counts_unmodified_like_serial(
    sources: Path, static_root: Path
) -> None:
    many_files(sources / "many", 40)
    run_collectstatic(parallel=8, verbosity=0)
    result = run_collectstatic(parallel=8)
    assert (
        result.stdout == f"\n0 static files copied to '{static_root}', 47 unmodified.\n"
    )


def test_parallel_n_copies_n_files_at_once(
    tmp_path: Path, static_root: Path, settings: Any, probe: ConcurrencyProbe
) -> None:
    settings.STATICFILES_DIRS = [str(many_files(tmp_path / "src", 24))]
    use_storage(settings, "tests.storages.SlowStorage")
    run_collectstatic(parallel=4, verbosity=0)
    assert probe.peak == 4
    assert len(probe.threads) == 4
    assert len(read_tree(static_root)) == 24


@pytest.mark.parametrize("parallel", [None, 1])
def test_without_parallel_or_with_one_worker_files_copy_inline(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    probe: ConcurrencyProbe,
    parallel: Any,
) -> None:
    settings.STATICFILES_DIRS = [str(many_files(tmp_path / "src", 5))]
    use_storage(settings, "tests.storages.SlowStorage")
    run_collectstatic(parallel=parallel, verbosity=0)
    assert probe.peak == 1
    assert probe.threads == {"MainThread"}


def test_bare_parallel_uses_workers_setting(
    tmp_path: Path, static_root: Path, settings: Any, probe: ConcurrencyProbe
) -> None:
    settings.STATICFILES_DIRS = [str(many_files(tmp_path / "src", 24))]
    settings.COLLECTSTATIC_PLUS = {"WORKERS": 3}
    use_storage(settings, "tests.storages.SlowStorage")
    run_collectstatic(parallel="auto", verbosity=0)
    assert probe.peak == 3


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("tests.storages.SlowStorage", LOCAL_WORKERS),
        ("tests.storages.SlowRemoteStorage", REMOTE_WORKERS),
    ],
)
def test_bare_parallel_default_depends_on_destination(
    tmp_path: Path,
    static_root: Path,
    settings: Any,
    probe: ConcurrencyProbe,
    backend: str,
    expected: int,
) -> None:
    settings.STATICFILES_DIRS = [str(many_files(tmp_path / "src", 2 * expected))]
    use_storage(settings, backend)
    run_collectstatic(parallel="auto", verbosity=0)
    assert probe.peak == expected


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_invalid_parallel_on_command_line_is_a_clear_error(
    sources: Path, static_root: Path, value: str
) -> None:
    with pytest.raises(CommandError) as raised:
        _cli("--parallel", value)
    assert str(raised.value) == (
        "Error: argument --parallel: must be a positive whole number of "
        f"workers, not '{value}'"
    )


def _cli(*args: str) -> None:
    from django.core.management import call_command

    call_command("collectstatic", "--noinput", *args)


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "0", "lots"])
def test_invalid_parallel_from_call_command_is_a_clear_error(
    sources: Path, static_root: Path, value: object
) -> None:
    with pytest.raises(CommandError) as raised:
        run_collectstatic(parallel=value)
    assert str(raised.value) == (
        f"--parallel must be a positive whole number of workers, not {value!r}."
    )
    assert not static_root.exists()


def test_parallel_auto_is_the_same_as_a_bare_flag(
    tmp_path: Path, static_root: Path, settings: Any, probe: ConcurrencyProbe
) -> None:
    settings.STATICFILES_DIRS = [str(many_files(tmp_path / "src", 12))]
    settings.COLLECTSTATIC_PLUS = {"WORKERS": 3}
    use_storage(settings, "tests.storages.SlowStorage")
    _cli("--parallel", "auto", "-v", "0")
    assert probe.peak == 3


@pytest.mark.parametrize("parallel", [None, 4])
def test_failed_file_is_named_after_the_others_land(
    sources: Path,
    static_root: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    parallel: Any,
) -> None:
    many_files(sources / "many", 30)
    use_storage(settings, "tests.storages.FailingStorage")
    monkeypatch.setenv("FAIL_ON", "file17.js")
    stdout, stderr = _capture()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(parallel=parallel, stdout=stdout, stderr=stderr)
    assert str(raised.value) == (
        "1 static file could not be collected: many/dir3/sub2/file17.js."
    )
    assert stderr.getvalue() == (
        "Could not collect 'many/dir3/sub2/file17.js': "
        "OSError: simulated failure writing many/dir3/sub2/file17.js\n"
    )
    landed = read_tree(static_root)
    assert len(landed) == 36
    assert "many/dir3/sub2/file17.js" not in landed


def test_every_failed_file_is_listed(
    sources: Path, static_root: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_files(sources / "many", 30)
    use_storage(settings, "tests.storages.FailingStorage")
    monkeypatch.setenv("FAIL_ON", "sub1/")
    stdout, stderr = _capture()
    with pytest.raises(CommandError) as raised:
        run_collectstatic(parallel=4, stdout=stdout, stderr=stderr)
    failed = sorted(f"many/dir{i % 7}/sub1/file{i}.js" for i in range(30) if i % 3 == 1)
    assert str(raised.value) == (
        f"10 static files could not be collected: {', '.join(failed)}."
    )
    lines = stderr.getvalue().splitlines()
    assert [line.split("'")[1] for line in lines] == failed


def test_no_post_processing_after_a_failed_file(
    sources: Path, static_root: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_storage(settings, "tests.storages.FailingManifestStorage")
    monkeypatch.setenv("FAIL_ON", "print.css")
    with pytest.raises(CommandError):
        run_collectstatic(parallel=4)
    assert not (static_root / "staticfiles.json").exists()
    assert (static_root / "css" / "site.css").exists()


def _capture() -> tuple[Any, Any]:
    import io

    return io.StringIO(), io.StringIO()


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    source = many_files(tmp_path / "src", 200)
    root = tmp_path / "root"
    (tmp_path / "ctrlc_settings.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *
            STATIC_ROOT = {str(root)!r}
            STATICFILES_DIRS = [{str(source)!r}]
            STORAGES = {{**STORAGES, "staticfiles": {{
                "BACKEND": "tests.storages.SlowStorage"}}}}
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": "ctrlc_settings",
        "SLOW_STORAGE_DELAY": "0.2",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "collectstatic",
            "--noinput",
            "--parallel",
            "4",
        ],
        env=env,
        preexec_fn=default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: root.exists() and len(read_tree(root)) >= 8, process)
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130
    assert "Traceback" not in stderr
    landed = read_tree(root)
    assert stderr == (
        f"CommandError: Interrupted: {len(landed)} file(s) collected before the "
        "interrupt; run collectstatic again to finish.\n"
    )
    assert 8 <= len(landed) < 200
    source_tree = read_tree(source)
    assert all(source_tree[name] == data for name, data in landed.items())


def test_ctrl_c_while_the_pool_closes_still_waits_for_work_in_flight(
    python_sigint: None,
) -> None:
    """A Ctrl-C that lands while the pool joins its thread (Python 3.10 to
    3.12 then take a running thread for stopped) still lets the work end."""
    finished: list[str] = []

    def slow(path: str) -> None:
        time.sleep(1.5)
        finished.append(path)

    ctrl_c = threading.Timer(
        0.2, signal.pthread_kill, (threading.get_ident(), signal.SIGINT)
    )
    with pytest.raises(CommandError) as interrupted, TransferPool(2) as pool:
        pool.submit("a.css", slow, "a.css")  # one task: one thread to join
        ctrl_c.start()
    ctrl_c.join()
    assert finished == ["a.css"]
    assert str(interrupted.value) == (
        "Interrupted: 1 file(s) collected before the interrupt; run "
        "collectstatic again to finish."
    )
    assert interrupted.value.returncode == 130


@pytest.mark.parametrize(("dry_run", "done"), [(True, "checked"), (False, "read")])
def test_ctrl_c_says_what_was_done_before_it_not_collected(
    tmp_path: Path,
    settings: Any,
    static_root: Path,
    python_sigint: None,
    monkeypatch: pytest.MonkeyPatch,
    dry_run: bool,
    done: str,
) -> None:
    """A dry run collects nothing, and a real run interrupted while it reads
    its sources (a fresh checkout: every one is read) has collected none yet."""
    from collectstatic_plus import run, transfer

    source = many_files(tmp_path / "src", 200)  # 10 s of work: the 0.5 s Ctrl-C lands
    settings.STATICFILES_DIRS = [str(source)]
    if not dry_run:
        run_collectstatic()
        for path in source.rglob("*.js"):
            os.utime(path, (time.time() + 60, time.time() + 60))

    def slowly(real: Any) -> Any:
        return lambda *args: (time.sleep(0.1), real(*args))[1]

    monkeypatch.setattr(transfer.Copier, "run", slowly(transfer.Copier.run))
    monkeypatch.setattr(run, "digest_file", slowly(run.digest_file))
    ctrl_c = threading.Timer(
        0.5, signal.pthread_kill, (threading.get_ident(), signal.SIGINT)
    )
    ctrl_c.start()
    with pytest.raises(CommandError) as interrupted:
        run_collectstatic(dry_run=dry_run, parallel=2)
    ctrl_c.join()
    assert re.fullmatch(
        rf"Interrupted: \d+ file\(s\) {done} before the interrupt; run "
        "collectstatic again to finish.",
        str(interrupted.value),
    )


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here (pytest started in the background
    by a shell without job control has it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("parallel", [None, 4])
@pytest.mark.parametrize("root", ["", None])
def test_missing_static_root_raises_improperly_configured_as_stock(
    sources: Path, settings: Any, parallel: Any, root: Any
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.STATIC_ROOT = root
    with pytest.raises(ImproperlyConfigured) as raised:
        run_collectstatic(parallel=parallel)
    assert "without having set the STATIC_ROOT setting" in str(raised.value)


def test_an_exit_raised_on_a_worker_reaches_the_main_thread() -> None:
    """A BaseException that is no Exception (SystemExit from a storage, say)
    is not lost with its worker: the run stops with it."""

    def leaves(path: str) -> None:
        raise SystemExit(f"{path} called exit")

    with pytest.raises(SystemExit) as raised, TransferPool(2) as pool:
        pool.submit("a.css", leaves, "a.css")
    assert str(raised.value) == "a.css called exit"
    assert (pool.completed, pool.failures) == (0, [])
