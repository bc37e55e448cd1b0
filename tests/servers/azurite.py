"""Azurite's blob service behind a counting HTTP proxy, both on 127.0.0.1.

Run as ``python -m tests.servers.azurite --location DIR --port-file FILE``: it
starts ``azurite-blob`` (installed with npm into ``.cache/npm-azurite`` by
:func:`ensure_installed`) on a free port, then an HTTP/1.1 proxy in front of
it on another free port, writes the proxy's port to FILE and serves until
terminated (Azurite is stopped with it).

Requests are counted at the proxy, before they are forwarded, so a client has
seen its response only after the request was counted and the counts are
exact. Besides the blob API the proxy answers ``GET /__requests__`` (every
request so far, as JSON objects ``{"method", "path", "query", "batch"}``,
where ``batch`` lists the sub-requests of a blob batch as ``"METHOD /path"``)
and ``POST /__requests__/reset``.

Tests use :class:`AzuriteServer`, which installs Azurite if needed and starts
and stops that process.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .child import REPO_ROOT, ChildServer, write_port_file
from .lifetime import exit_with_parent

INSTALL_DIR = REPO_ROOT / ".cache" / "npm-azurite"
AZURITE_PACKAGE = "azurite@3"
COUNTS_PATH = "/__requests__"

#: Azurite's well-known development account and key (published by Microsoft
#: for the emulator; it grants nothing anywhere else).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)

LISTENING = re.compile(rb"successfully listens on http://127\.0\.0\.1:(\d+)")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
#: A sub-request line inside a blob batch body, e.g. ``DELETE /acct/c/b HTTP/1.1``.
BATCH_LINE = re.compile(rb"^(DELETE|PUT|GET|HEAD|POST) (\S+) HTTP/1\.1\r?$", re.M)


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot be installed or started on this machine."""


def azurite_binary() -> Path:
    return INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"


def ensure_installed() -> Path:
    """Install Azurite with npm into ``.cache/npm-azurite`` the first time."""
    binary = azurite_binary()
    if binary.exists():
        return binary
    if shutil.which("node") is None:
        raise AzuriteUnavailable("node is not installed (Azurite is a Node.js app)")
    npm = shutil.which("npm")
    if npm is None:
        raise AzuriteUnavailable("npm is not installed, so Azurite cannot be")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        npm,
        "install",
        "--no-save",
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(INSTALL_DIR),
        AZURITE_PACKAGE,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AzuriteUnavailable(
            f"`npm install {AZURITE_PACKAGE}` failed: {error}"
        ) from error
    if done.returncode != 0 or not binary.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise AzuriteUnavailable(
            f"`npm install {AZURITE_PACKAGE}` failed ({done.returncode}): "
            + " | ".join(tail)
        )
    return binary


# --- the proxy, in the child process -------------------------------------


class Recorder:
    """The requests the proxy has seen, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []

    def add(self, method: str, target: str, body: bytes) -> None:
        parts = urlsplit(target)
        entry: dict[str, Any] = {
            "method": method,
            "path": unquote(parts.path),
            "query": parts.query,
            "batch": [],
        }
        if "comp=batch" in parts.query:
            entry["batch"] = [
                f"{m.group(1).decode()} {unquote(m.group(2).decode().split('?')[0])}"
                for m in BATCH_LINE.finditer(body)
            ]
        with self.lock:
            self.entries.append(entry)

    def snapshot(self, reset: bool) -> bytes:
        with self.lock:
            data = json.dumps(self.entries).encode()
            if reset:
                self.entries.clear()
        return data


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self) -> None:
        body = self.read_body()
        if self.path.startswith(COUNTS_PATH):
            data = self.server.recorder.snapshot(reset=self.command == "POST")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.server.recorder.add(self.command, self.path, body)
        headers = {
            key: value
            for key, value in self.headers.items()
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length"
        }
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        status, reason, reply_headers, reply = self.server.forward(
            self.command, self.path, body, headers
        )
        self.send_response(status, reason)
        for key, value in reply_headers:
            lowered = key.lower()
            if lowered in HOP_BY_HOP or lowered == "content-length":
                continue
            self.send_header(key, value)
        if self.command == "HEAD":
            length = dict((k.lower(), v) for k, v in reply_headers).get(
                "content-length"
            )
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.upstream_port = upstream_port
        self.recorder = Recorder()
        self.local = threading.local()

    def connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port)
            self.local.conn = conn
        return conn

    def forward(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):
            conn = self.connection(fresh=attempt == 2)
            try:
                conn.request(method, target, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                # Azurite closes idle keep-alive connections after 5 s; such a
                # request never reached it, so it is sent again once.
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.connection(fresh=True)
            return response.status, response.reason, response.getheaders(), data
        raise AssertionError("unreachable")


def start_azurite(binary: Path, location: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start azurite-blob on a free port; its process and the port."""
    log_path = location / "azurite.out"
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the child
    process = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--location",
            str(location),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_bytes())
        if found:
            return process, int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    output = log_path.read_bytes().decode(errors="replace").strip()
    raise AzuriteUnavailable(f"azurite-blob did not start: {output[-500:]}")


def serve(location: str, port_file: str) -> None:
    binary = ensure_installed()
    azurite, upstream = start_azurite(binary, Path(location))

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    exit_with_parent()
    try:
        proxy = ProxyServer(upstream)
        write_port_file(port_file, proxy.server_address[1])
        proxy.serve_forever()
    finally:
        azurite.terminate()
        try:
            azurite.wait(timeout=10)
        except subprocess.TimeoutExpired:
            azurite.kill()
            azurite.wait()


# --- the handle, in the test process -------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the proxy forwarded to Azurite."""

    method: str
    path: str
    query: str
    batch: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if key:
                found[key] = value
        return found

    @property
    def kind(self) -> str:
        """The Blob service operation: PutBlob, ListBlobs, BlobBatch, ..."""
        params = self.params
        comp, restype = params.get("comp"), params.get("restype")
        if restype == "container":
            if comp == "list":
                return "ListBlobs"
            if comp == "batch":
                return "BlobBatch"
            return {"PUT": "CreateContainer", "DELETE": "DeleteContainer"}.get(
                self.method, f"{self.method} container"
            )
        if comp == "block":
            return "PutBlock"
        if comp == "blocklist":
            return "PutBlockList"
        if comp:
            return f"{self.method} comp={comp}"
        return {
            "PUT": "PutBlob",
            "GET": "GetBlob",
            "HEAD": "GetBlobProperties",
            "DELETE": "DeleteBlob",
        }.get(self.method, self.method)

    def blob(self, container: str) -> str | None:
        """The blob name this request is about, in ``container``, else None."""
        prefix = f"/{ACCOUNT}/{container}/"
        return self.path[len(prefix) :] if self.path.startswith(prefix) else None


class AzuriteServer(ChildServer):
    """Handle on Azurite plus its counting proxy, running in a child process.

    Azurite keeps its data in the handle's temporary folder.
    """

    module = "tests.servers.azurite"
    title = "Azurite"
    prefix = "azurite-"
    keeps_log = True
    stop_timeout = 15.0

    @property
    def location(self) -> str | None:
        """The folder Azurite keeps its data in, while it runs."""
        return None if self.folder is None else str(self.folder)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_endpoint};"
        )

    def start(self, timeout: float = 90.0) -> AzuriteServer:
        """Install Azurite if needed and start it; AzuriteUnavailable if not."""
        ensure_installed()
        return super().start(timeout)

    def arguments(self) -> list[str]:
        return ["--location", str(self.folder)]

    def start_error(self, output: str) -> Exception:
        return AzuriteUnavailable(f"Azurite did not start: {output[-800:]}")

    def _counts(self, method: str) -> list[Request]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{COUNTS_PATH}"
            + ("/reset" if method == "POST" else ""),
            method=method,
        )
        with urllib.request.urlopen(request) as response:
            return [
                Request(e["method"], e["path"], e["query"], tuple(e["batch"]))
                for e in json.load(response)
            ]

    def requests(self) -> list[Request]:
        """Every request since the last reset, in order."""
        return self._counts("GET")

    def reset_requests(self) -> None:
        self._counts("POST")

    def counts(self) -> collections.Counter[str]:
        """Requests by operation since the last reset, e.g. ``{"PutBlob": 3}``."""
        return collections.Counter(request.kind for request in self.requests())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--location", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    try:
        serve(args.location, args.port_file)
    except AzuriteUnavailable as error:
        print(error, file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
