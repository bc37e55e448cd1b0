"""moto's S3 server in its own process, counting every request it answers.

Run as ``python -m tests.servers.s3 --port-file FILE``: it binds 127.0.0.1 on a
free port, writes the port to FILE and serves until killed. Besides moto's API
it answers ``GET /__requests__`` (every request so far, as JSON lines
``"METHOD /path?query"``) and ``POST /__requests__/reset``.

Tests and benchmarks use :class:`S3Server`, which starts and stops that process.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from .child import ChildServer, write_port_file
from .lifetime import exit_with_parent

COUNTS_PATH = "/__requests__"


class CountingMiddleware:
    """WSGI middleware that records each request's method, path and query."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.requests: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(COUNTS_PATH):
            return self.answer_counts(environ, start_response)
        query = environ.get("QUERY_STRING", "")
        line = f"{environ['REQUEST_METHOD']} {path}" + (f"?{query}" if query else "")
        with self.lock:
            self.requests.append(line)
        return self.app(environ, start_response)

    def answer_counts(
        self, environ: dict[str, Any], start_response: Any
    ) -> list[bytes]:
        with self.lock:
            if environ["REQUEST_METHOD"] == "POST":
                self.requests.clear()
            body = json.dumps(self.requests).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def serve(port_file: str, port: int = 0) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = CountingMiddleware(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler
    )
    write_port_file(port_file, server.server_address[1])
    exit_with_parent()
    server.serve_forever()


class S3Server(ChildServer):
    """Handle on a counting moto server running in a child process."""

    module = "tests.servers.s3"
    title = "moto's S3 server"
    prefix = "moto-"

    def requests(self) -> list[str]:
        with urllib.request.urlopen(self.endpoint_url + COUNTS_PATH) as response:
            return list(json.load(response))

    def reset_requests(self) -> None:
        request = urllib.request.Request(
            self.endpoint_url + COUNTS_PATH + "/reset", method="POST"
        )
        urllib.request.urlopen(request).close()

    def counts(self) -> collections.Counter[str]:
        """Requests by method since the last reset, e.g. ``{"PUT": 3, "HEAD": 2}``."""
        return collections.Counter(line.split(" ", 1)[0] for line in self.requests())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.port_file, args.port)


if __name__ == "__main__":
    main()
