"""The Google Cloud Storage emulator in its own process, counting every request.

Run as ``python -m tests.servers.gcs --port-file FILE``: it serves
``gcp-storage-emulator``'s JSON API (in memory) on 127.0.0.1 on a free port,
writes the port to FILE and serves until killed. Clients reach it with
``STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT``.

Requests are counted at the server: each request is recorded, before it is
handled, as ``"METHOD /path?query"``; each call inside a batch request as
``"METHOD /path?query"`` in a second list; the object name of each upload
(which a multipart upload carries in its body, not its URL) in a third.
Besides the emulator's API it answers ``GET /__requests__``
(``{"requests": [...], "batched": [...], "uploaded": [...]}``) and
``POST /__requests__/reset``.

Where the emulator differs from the service in a way the tests depend on,
this wrapper behaves as the service documents:

- connections are accepted on threads and kept alive (HTTP/1.1); the
  emulator's own server takes one connection at a time and closes each after
  one response. Its handler still runs one request at a time, under a lock
  (its in-memory store is not thread-safe);
- ``objects.list`` without a delimiter returns pages of at most 1,000 items
  (``maxResults``, ``pageToken``, ``nextPageToken``); the emulator returns
  every item in one page;
- a batch request of more than 100 calls is refused (400), as the service
  refuses it; the emulator takes any number;
- ``ifGenerationMatch`` (an upload's, a download's, a delete's) is checked
  (412 if the object is not at that generation; 0: none exists); the
  emulator ignores it;
- a download says the object's generation (``X-Goog-Generation``); the
  emulator does not.

Tests and benchmarks use :class:`GCSServer`, which starts and stops that process.
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import logging
import re
import threading
import urllib.parse
import urllib.request
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .child import ChildServer, write_port_file
from .lifetime import exit_with_parent

COUNTS_PATH = "/__requests__"
#: A call inside a ``multipart/mixed`` batch body.
BATCHED_CALL = re.compile(rb"^(GET|POST|PUT|PATCH|DELETE) (\S+)", re.MULTILINE)
#: The object name in an upload's JSON metadata.
UPLOAD_NAME = re.compile(rb'"name"\s*:\s*("(?:[^"\\]|\\.)*")')
LIST_PATH = re.compile(r"^/storage/v1/b/(?P<bucket>[-.\w]+)/o$")
#: An object's URL path (metadata, delete, download) or an upload's.
OBJECT_PATH = re.compile(
    r"^(?:/download)?/storage/v1/b/(?P<bucket>[-.\w]+)/o/(?P<name>[^/?]+)$"
)
UPLOAD_PATH = re.compile(r"^/upload/storage/v1/b/(?P<bucket>[-.\w]+)/o$")
#: The service's limits: items per listing page, calls per batch request.
MAX_LIST_PAGE = 1000
MAX_BATCH_CALLS = 100


def serve(port_file: str, port: int = 0) -> None:
    from gcp_storage_emulator.server import (  # type: ignore[import-untyped]
        RequestHandler,
        Router,
    )
    from gcp_storage_emulator.storage import Storage  # type: ignore[import-untyped]

    # Its loggers warn on every batch response; keep errors only.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    logging.getLogger("api.object").setLevel(logging.ERROR)
    lock = threading.Lock()
    recorded: dict[str, list[str]] = {"requests": [], "batched": [], "uploaded": []}
    #: Whether batch requests are served (fake-gcs-server, which many test
    #: against, answers them with a plain 200 the client cannot parse).
    behaviour = {"batches": True}
    storage = Storage(use_memory_fs=True)
    # After every write the emulator serialises every bucket's metadata to a
    # file kept in memory too, which nothing reads back: quadratic time.
    storage._write_config_to_file = lambda: None

    class CountingHandler(RequestHandler):  # type: ignore[misc]
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY, a
        # kept-alive connection waits on delayed ACKs (40 ms a response).
        disable_nagle_algorithm = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(storage, *args, **kwargs)

        def serve(self, method: str) -> None:
            if self.path.startswith(COUNTS_PATH):
                self.answer_counts(method)
                return
            body = self.read_body()
            with lock:
                self.record(method, body)
                if self.is_batch() and not behaviour["batches"]:
                    self.answer_json(200, {})  # what fake-gcs-server answers
                    return
                calls = BATCHED_CALL.findall(body) if self.is_batch() else []
                if len(calls) > MAX_BATCH_CALLS:
                    message = f"{len(calls)} calls in a batch, at most 100"
                    self.answer_json(400, {"error": {"code": 400, "message": message}})
                    return
                if method == "GET" and self.answer_list_page():
                    return
                if not self.generation_matches(body):
                    error = {"code": 412, "message": "conditionNotMet"}
                    self.answer_json(412, {"error": error})
                    return
                # The emulator reads the body only when a handler asks for
                # it; give it this request's body alone, so a keep-alive
                # connection never starts the next request mid-body.
                handler: Any = self
                socket_file, handler.rfile = handler.rfile, io.BytesIO(body)
                try:
                    Router(self).handle(method)
                finally:
                    handler.rfile = socket_file

        def end_headers(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            found = OBJECT_PATH.match(parts.path)
            if self.command == "GET" and found and "alt=media" in parts.query:
                name = urllib.parse.unquote(found["name"])
                try:
                    blob = storage.get_file_obj(found["bucket"], name)
                except Exception:  # NotFound: the 404 says so
                    blob = None
                if blob is not None:
                    self.send_header("X-Goog-Generation", str(blob["generation"]))
            super().end_headers()

        def is_batch(self) -> bool:
            return bool(self.path.startswith("/batch/"))

        def record(self, method: str, body: bytes) -> None:
            recorded["requests"].append(f"{method} {self.path}")
            if self.is_batch():
                recorded["batched"].extend(
                    f"{verb.decode()} {_path_of(target.decode())}"
                    for verb, target in BATCHED_CALL.findall(body)
                )
            if method == "POST" and self.path.startswith("/upload/"):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                found = UPLOAD_NAME.search(body)
                if "name" in query:
                    recorded["uploaded"].append(query["name"][0])
                elif found:
                    recorded["uploaded"].append(json.loads(found.group(1)))

        def answer_list_page(self) -> bool:
            """Answer ``objects.list`` a page at a time, as the service does."""
            parts = urllib.parse.urlsplit(self.path)
            match = LIST_PATH.match(parts.path)
            query = urllib.parse.parse_qs(parts.query)
            if not match or {"delimiter", "matchGlob", "softDeleted"} & set(query):
                return False
            try:
                items, _prefixes = storage.get_file_list(
                    match["bucket"], query.get("prefix", [None])[0]
                )
            except Exception:
                return False  # the emulator answers (404 for a missing bucket)
            size = min(int(query.get("maxResults", [MAX_LIST_PAGE])[0]), MAX_LIST_PAGE)
            token = query.get("pageToken", [""])[0]
            after = base64.urlsafe_b64decode(token).decode() if token else ""
            rest = [item for item in items if item["name"] > after]
            page: dict[str, Any] = {"kind": "storage#objects", "items": rest[:size]}
            if len(rest) > size:
                last = rest[size - 1]["name"].encode()
                page["nextPageToken"] = base64.urlsafe_b64encode(last).decode()
            self.answer_json(200, page)
            return True

        def generation_matches(self, body: bytes) -> bool:
            """Whether the object is at the request's ``ifGenerationMatch``."""
            parts = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parts.query)
            wanted = query.get("ifGenerationMatch")
            if not wanted:
                return True
            found = OBJECT_PATH.match(parts.path)
            upload = UPLOAD_PATH.match(parts.path)
            if found:
                bucket, name = found["bucket"], urllib.parse.unquote(found["name"])
            elif upload and "name" in query:
                bucket, name = upload["bucket"], query["name"][0]
            elif upload and (named := UPLOAD_NAME.search(body)):
                bucket, name = upload["bucket"], json.loads(named.group(1))
            else:
                return True
            try:
                generation = str(storage.get_file_obj(bucket, name)["generation"])
            except Exception:  # NotFound
                generation = "0"
            return generation == wanted[0]

        def read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length:
                return bytes(self.rfile.read(int(length)))
            if (self.headers.get("Transfer-Encoding") or "").lower() != "chunked":
                return b""
            chunks = []
            while size := int(self.rfile.readline().strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the blank line after the last chunk
            body = b"".join(chunks)
            del self.headers["Transfer-Encoding"]
            self.headers["Content-Length"] = str(len(body))
            return body

        def answer_counts(self, method: str) -> None:
            self.read_body()
            if self.path.endswith("/batches"):
                with lock:
                    behaviour["batches"] = method == "PUT"
                self.answer_json(200, behaviour)
                return
            with lock:
                if method == "POST":
                    for found in recorded.values():
                        found.clear()
                self.answer_json(200, recorded)

        def answer_json(self, status: int, data: Any) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self.serve("GET")

        def do_POST(self) -> None:
            self.serve("POST")

        def do_PUT(self) -> None:
            self.serve("PUT")

        def do_PATCH(self) -> None:
            self.serve("PATCH")

        def do_DELETE(self) -> None:
            self.serve("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", port), CountingHandler)
    server.daemon_threads = True
    write_port_file(port_file, server.server_address[1])
    exit_with_parent()
    server.serve_forever()


def _path_of(target: str) -> str:
    """``/path?query`` of a batched call's target (a URL or a path)."""
    parts = urllib.parse.urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class GCSServer(ChildServer):
    """Handle on a counting GCS emulator running in a child process.

    Its ``endpoint_url`` is what ``STORAGE_EMULATOR_HOST`` must be for
    clients to use it.
    """

    module = "tests.servers.gcs"
    title = "the GCS emulator"
    prefix = "gcs-emulator-"
    keeps_log = True
    #: The project every test client names (the emulator accepts any).
    project = "collectstatic-plus-tests"

    def _recorded(self, reset: bool = False) -> dict[str, list[str]]:
        request = urllib.request.Request(
            self.endpoint_url + COUNTS_PATH + ("/reset" if reset else ""),
            method="POST" if reset else "GET",
        )
        with urllib.request.urlopen(request) as response:
            return dict(json.load(response))

    def requests(self) -> list[str]:
        """Every request since the last reset, ``"METHOD /path?query"``."""
        return self._recorded()["requests"]

    def batched(self) -> list[str]:
        """Every call made inside batch requests since the last reset."""
        return self._recorded()["batched"]

    def uploaded(self) -> list[str]:
        """The object name of every upload since the last reset."""
        return self._recorded()["uploaded"]

    def recorded(self) -> dict[str, list[str]]:
        """``requests``, ``batched`` and ``uploaded`` at once."""
        return self._recorded()

    def reset_requests(self) -> None:
        self._recorded(reset=True)

    def serve_batches(self, enabled: bool) -> None:
        """Serve batch requests, or answer them as fake-gcs-server does."""
        request = urllib.request.Request(
            self.endpoint_url + COUNTS_PATH + "/batches",
            method="PUT" if enabled else "DELETE",
        )
        urllib.request.urlopen(request).close()

    def counts(self) -> collections.Counter[str]:
        """Requests by method since the last reset, e.g. ``{"POST": 3, "GET": 2}``."""
        return collections.Counter(line.split(" ", 1)[0] for line in self.requests())


def kind(line: str) -> str:
    """A request's kind: LIST, META, DOWNLOAD, UPLOAD, DELETE, BATCH, BUCKET."""
    method, target = line.split(" ", 1)
    path = urlsplit(target).path
    if path.startswith("/batch/"):
        return "BATCH"
    if path.startswith("/upload/"):
        return "UPLOAD"
    if path.startswith("/download/") or "alt=media" in target:
        return "DOWNLOAD"
    if path.endswith("/o"):
        return "LIST" if method == "GET" else method
    if "/o/" in path:
        return {"GET": "META", "DELETE": "DELETE"}.get(method, method)
    if method == "GET" and path.startswith("/storage/v1/b/"):
        return "BUCKET"
    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.port_file, args.port)


if __name__ == "__main__":
    main()
