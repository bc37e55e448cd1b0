"""Test servers that run in a child process, and the handles that start them.

A server is run as ``python -m tests.servers.NAME ... --port-file FILE``: it
binds 127.0.0.1 on a free port, writes the port to FILE with
:func:`write_port_file` and serves until terminated (or until the process
that started it is gone, see :mod:`.lifetime`). Tests and benchmarks use a
:class:`ChildServer` subclass, which starts that process in a temporary
folder, waits for the port file and stops the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]

Server = TypeVar("Server", bound="ChildServer")


def write_port_file(port_file: str, port: int) -> None:
    """Write ``port`` to ``port_file``: beside it first, then renamed, so that
    a handle waiting for the file never reads it half written."""
    tmp = port_file + ".tmp"
    Path(tmp).write_text(str(port))
    os.replace(tmp, port_file)


class ChildServer:
    """Handle on a server running in a child process.

    A subclass names the server's module and what the error calls it, and
    gives the server's arguments besides ``--port-file``.
    """

    #: The server's module, run as ``python -m MODULE``.
    module: str
    #: What the server is called in the error when it does not start.
    title: str
    #: The prefix of its temporary folder (which holds the port file).
    prefix: str
    #: Whether its output (stdout and stderr) goes to ``log`` in that folder,
    #: to be quoted when it does not start; if not, the output is discarded.
    keeps_log = False
    #: Seconds :meth:`stop` waits after SIGTERM before it sends SIGKILL.
    stop_timeout = 10.0

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.folder: Path | None = None
        self.log = Path(os.devnull)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        """The server's command-line arguments besides ``--port-file``."""
        return []

    def start_error(self, output: str) -> Exception:
        """What :meth:`start` raises when the server does not start; ``output``
        is what it wrote to its log."""
        return RuntimeError(
            f"{self.title} did not start" + (f": {output}" if self.keeps_log else "")
        )

    def start(self: Server, timeout: float = 30.0) -> Server:
        """Start the server; wait at most ``timeout`` seconds for its port."""
        self.folder = Path(tempfile.mkdtemp(prefix=self.prefix))
        port_file = self.folder / "port"
        if self.keeps_log:
            self.log = self.folder / "log"
        command = [sys.executable, "-m", self.module, *self.arguments()]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--port-file", str(port_file)],
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise self.start_error(self.stop())
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> str:
        """Stop the process and remove its folder; what it wrote to its log
        ("" when it keeps none)."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        try:
            output = self.log.read_text(errors="replace").strip()
        except OSError:
            output = ""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.log = Path(os.devnull)
        return output

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
