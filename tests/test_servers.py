"""The test servers themselves: they must not outlive whoever started them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STARTER = textwrap.dedent(
    """
    import time
    from tests.servers.latency_proxy import LatencyProxy
    from tests.servers.s3 import S3Server

    s3 = S3Server().start()
    proxy = LatencyProxy(s3.port, 1.0).start()
    print(s3.process.pid, proxy.process.pid, flush=True)
    time.sleep(120)
    """
)


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_servers_exit_when_the_process_that_started_them_is_killed() -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    pids = [int(pid) for pid in starter.stdout.readline().split()]
    assert len(pids) == 2 and all(running(pid) for pid in pids)

    starter.kill()  # SIGKILL: it cannot stop them itself
    starter.wait()
    deadline = time.monotonic() + 15
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if running(pid)] == []
