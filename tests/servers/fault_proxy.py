"""An HTTP/1.1 proxy on 127.0.0.1 that injects S3-style faults, seeded.

Run as ``python -m tests.servers.fault_proxy --target-port P --port-file FILE
[--seed S] [--fault-rate 0.05] [--fail-key KEY]... [--throttle-seconds T]``:
it binds 127.0.0.1 on a free port, writes the port to FILE and forwards every
request to 127.0.0.1:P (one upstream connection per client connection, so
keep-alive works), except that:

- with probability ``fault_rate`` a request meets one transient fault,
  picked at random:

  ``drop``      the connection is closed before the request is forwarded;
  ``slowdown``  it is answered ``503 SlowDown`` (S3's XML error body);
  ``internal``  it is answered ``500 InternalError``;
  ``delay``     it is forwarded after a pause of 50 to 300 ms;
  ``lost``      it is forwarded, and the connection is closed instead of
                passing the response on (the write happened, the client
                does not know);

  the draws are seeded by ``seed``, the request (method, key, query) and how
  many times that request was seen, so a seed faults the same requests
  however concurrent requests interleave;
- every PUT of a key given with ``--fail-key`` is answered ``400
  InvalidRequest``: an error that is neither transient nor one that the
  retry layer calls permanent (403 would stop the whole run), so that one
  file fails and the others go on (``fail_code`` picks another code);
- with ``--throttle-seconds T``, every request in the T seconds after the
  first one is answered ``503 SlowDown`` (a throttled burst); with
  ``--throttle-on METHOD``, only requests of that method, from the first;
- a ``script`` (set through ``/__faults__/config``) gives chosen requests
  chosen faults, e.g. the first PUT of one key a 500.

``Expect: 100-continue`` (botocore sends it on PUT) is answered by the proxy
itself, which then reads the body and forwards the request without the
header. Bodies are read by ``Content-Length`` or chunked transfer coding.

The proxy answers ``GET /__faults__`` itself (JSON: requests seen and
forwarded, faults injected by kind, the peak of requests in flight, the last
events), ``POST /__faults__/reset`` (zero the counts) and ``POST
/__faults__/config`` (a JSON object of new settings; the count of times each
request was seen restarts, and so does the throttle window). It exits by
itself after ``--max-lifetime`` seconds or when its parent process goes away.

Tests use :class:`FaultProxy`, which starts and stops that process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from .child import ChildServer, write_port_file

CONTROL_PATH = "/__faults__"
#: Transient faults, in the order the generator picks among them.
KINDS = ("drop", "slowdown", "internal", "delay", "lost")
#: Request or response head (request line and headers), at most.
MAX_HEAD = 64 * 1024
#: Request or response body, at most.
MAX_BODY = 256 * 1024 * 1024
#: Seconds a connection may stay silent before the proxy closes it.
IDLE_TIMEOUT = 120.0
#: Events kept for ``GET /__faults__`` (the counts are kept in full).
MAX_EVENTS = 2000
#: Requests per client connection, at most (a bound on the loop).
MAX_REQUESTS_PER_CONNECTION = 100_000
#: Interim (1xx) responses skipped before a final one, at most.
MAX_INTERIM = 5

ERRORS = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "throttle": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "internal": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
}
#: Codes ``fail_code`` may name, with their status and reason.
FAIL_CODES = {
    "InvalidRequest": (400, "Bad Request"),
    "BadDigest": (400, "Bad Request"),
    "EntityTooLarge": (400, "Bad Request"),
    "AccessDenied": (403, "Forbidden"),
}


class ProtocolError(Exception):
    """The peer sent something this proxy does not understand."""


@dataclass
class Config:
    fault_rate: float = 0.0
    seed: int = 0
    fail_keys: list[str] = field(default_factory=list)
    fail_code: str = "InvalidRequest"
    throttle_seconds: float = 0.0
    throttle_on: str = "*"
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    delay_min: float = 0.05
    delay_max: float = 0.3
    #: Faults for chosen requests: each rule is a dict with ``method`` ("*"
    #: for any), ``key`` (the object key; "*" for any, "" for the bucket),
    #: ``query`` (a substring the query must contain, default ""), ``skip``
    #: (matching requests let through first, default 0) and ``kinds`` (the
    #: faults for the next matching requests, in order).
    script: list[dict[str, Any]] = field(default_factory=list)

    def validate(self) -> None:
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if not self.kinds or not set(self.kinds) <= set(KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}")
        if self.fail_code not in FAIL_CODES:
            raise ValueError(f"fail_code must be one of {sorted(FAIL_CODES)}")
        if not 0 <= self.delay_min <= self.delay_max <= 30:
            raise ValueError("need 0 <= delay_min <= delay_max <= 30")
        if not 0 <= self.throttle_seconds <= 600:
            raise ValueError("throttle_seconds must be within [0, 600]")
        for rule in self.script:
            if not isinstance(rule, dict) or not set(rule) <= {
                "method",
                "key",
                "query",
                "skip",
                "kinds",
            }:
                raise ValueError(f"bad script rule {rule!r}")
            if not set(rule.get("kinds", ())) <= {*KINDS, "throttle"}:
                raise ValueError(f"unknown kind in script rule {rule!r}")


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return header_of(self.headers, name.lower())

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def key(self) -> str:
        """The object key of a path-style S3 request ("" for a bucket)."""
        parts = unquote(self.path).lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def wants_close(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection

    def encode(self) -> bytes:
        """The request as forwarded: without ``Expect``, body included."""
        lines = [f"{self.method} {self.target} {self.version}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() != "expect"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def matches(rule: dict[str, Any], request: Request) -> bool:
    method, key = rule.get("method", "*"), rule.get("key", "*")
    return (
        method in ("*", request.method)
        and key in ("*", request.key)
        and rule.get("query", "") in request.query
    )


class Injector:
    """Decides, request by request, which fault (if any) to inject.

    The draw for a request depends only on the seed, the request (method,
    key, query) and how many times the same request was seen before: a seed
    gives the same faults to the same requests whatever order concurrent
    requests arrive in.
    """

    def __init__(self, config: Config) -> None:
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.forwarded = 0
        self.events: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.configure(config)

    def configure(self, config: Config) -> None:
        config.validate()
        self.config = config
        self.seen: Counter[str] = Counter()
        self.rule_hits = [0] * len(config.script)
        self.throttle_from: float | None = None

    def reset(self) -> None:
        self.counts.clear()
        self.requests = self.forwarded = 0
        self.events.clear()
        self.peak = self.in_flight

    def choose(self, request: Request) -> tuple[str | None, float]:
        """The fault for this request (None: forward it as it is), and a delay."""
        config = self.config
        self.requests += 1
        identity = f"{request.method} {request.key}?{request.query}"
        attempt = self.seen[identity]
        self.seen[identity] += 1
        draws = random.Random(f"{config.seed}|{identity}|{attempt}")
        draw, pick = draws.random(), draws.choice(config.kinds)
        delay = draws.uniform(config.delay_min, config.delay_max)
        kind: str | None = None
        # A burst is meant for the run's files: the lease (a run's first and
        # last request) neither starts it nor meets it.
        lease = request.key.endswith(".lease")
        if (
            config.throttle_seconds > 0
            and config.throttle_on in ("*", request.method)
            and not lease
        ):
            now = time.monotonic()
            if self.throttle_from is None:
                self.throttle_from = now
            if now - self.throttle_from < config.throttle_seconds:
                kind = "throttle"
        for index, rule in enumerate(config.script):
            if kind is None and matches(rule, request):
                hit = self.rule_hits[index] - int(rule.get("skip", 0))
                self.rule_hits[index] += 1
                kinds = list(rule.get("kinds", ()))
                if 0 <= hit < len(kinds):
                    kind = kinds[hit]
        if kind is None and request.method == "PUT" and request.key in config.fail_keys:
            kind = "fail_key"
        if kind is None and draw < config.fault_rate:
            kind = pick
        if kind is not None:
            self.counts[kind] += 1
            if len(self.events) < MAX_EVENTS:
                self.events.append(
                    {"kind": kind, "method": request.method, "path": request.path}
                )
        return kind, delay

    def snapshot(self) -> dict[str, Any]:
        faults = dict(self.counts)
        return {
            "config": {f.name: getattr(self.config, f.name) for f in fields(Config)},
            "requests": self.requests,
            "forwarded": self.forwarded,
            "faults": faults,
            "transient": sum(faults.get(kind, 0) for kind in (*KINDS, "throttle")),
            "peak_in_flight": self.peak,
            "events": self.events,
        }


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The first line and the headers of a request or response head."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as error:  # pragma: no cover - latin-1 decodes all
        raise ProtocolError(str(error)) from None
    lines = text.split("\r\n")
    first, headers = lines[0], []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ProtocolError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return first, headers


def header_of(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Up to and including the blank line; None on a clean end of stream."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return None
        raise ProtocolError("the stream ended inside a head") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"a head longer than {MAX_HEAD} bytes") from None


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    if size > MAX_BODY:
        raise ProtocolError(f"a body of {size} bytes, more than {MAX_BODY}")
    return await asyncio.wait_for(reader.readexactly(size), IDLE_TIMEOUT)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body as it was sent (sizes, data and trailers)."""
    raw = bytearray()
    while len(raw) <= MAX_BODY:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
        raw += line
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line!r}") from None
        if size == 0:
            while len(raw) <= MAX_BODY:  # trailers, then a blank line
                trailer = await asyncio.wait_for(
                    reader.readuntil(b"\r\n"), IDLE_TIMEOUT
                )
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw)
            break
        raw += await read_exactly(reader, size + 2)
    raise ProtocolError(f"a chunked body longer than {MAX_BODY} bytes")


async def read_body(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]]
) -> bytes:
    coding = (header_of(headers, "transfer-encoding") or "").lower()
    if "chunked" in coding:
        return await read_chunked(reader)
    length = header_of(headers, "content-length")
    if length is None:
        return b""
    try:
        size = int(length)
    except ValueError:
        raise ProtocolError(f"bad Content-Length {length!r}") from None
    return await read_exactly(reader, size)


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    head = await read_head(reader)
    if head is None:
        return None
    first, headers = parse_head(head)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ProtocolError(f"bad request line {first!r}")
    request = Request(parts[0], parts[1], parts[2], headers)
    if (request.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    request.body = await read_body(reader, headers)
    return request


@dataclass
class Response:
    raw: bytes
    close: bool


async def read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """One final response from upstream, as it came (interim ones skipped)."""
    for _ in range(MAX_INTERIM + 1):
        head = await read_head(reader)
        if head is None:
            raise ConnectionResetError("upstream closed the connection")
        first, headers = parse_head(head)
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {first!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        connection = (header_of(headers, "connection") or "").lower()
        close = "close" in connection or (
            parts[0] == "HTTP/1.0" and "keep-alive" not in connection
        )
        chunked = "chunked" in (header_of(headers, "transfer-encoding") or "").lower()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif chunked or header_of(headers, "content-length") is not None:
            body = await read_body(reader, headers)
        else:  # delimited by the end of the connection
            body = await asyncio.wait_for(reader.read(MAX_BODY), IDLE_TIMEOUT)
            close = True
        return Response(head + body, close)
    raise ProtocolError("too many interim responses")


def error_response(
    status: int, reason: str, code: str, message: str, request: Request, serial: int
) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(request.path)}</Resource>"
        f"<RequestId>FAULT{serial:012d}</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amz-request-id: FAULT{serial:012d}\r\n"
        "\r\n"
    ).encode()
    return head if request.method == "HEAD" else head + body


def json_response(document: object) -> bytes:
    body = json.dumps(document).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class Proxy:
    def __init__(self, target_port: int, config: Config) -> None:
        self.target_port = target_port
        self.injector = Injector(config)

    def control(self, request: Request) -> bytes:
        path = request.path
        if request.method == "POST" and path == CONTROL_PATH + "/reset":
            self.injector.reset()
        elif request.method == "POST" and path == CONTROL_PATH + "/config":
            try:
                changes = json.loads(request.body or b"{}")
                current = {
                    f.name: getattr(self.injector.config, f.name)
                    for f in fields(Config)
                }
                config = Config(**{**current, **changes})
                self.injector.configure(config)
            except (TypeError, ValueError) as error:
                body = str(error).encode()
                return (
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        return json_response(self.injector.snapshot())

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = await read_request(reader, writer)
                if request is None:
                    return
                if request.path.startswith(CONTROL_PATH):
                    writer.write(self.control(request))
                    await writer.drain()
                    if request.wants_close:
                        return
                    continue
                injector = self.injector
                injector.in_flight += 1
                injector.peak = max(injector.peak, injector.in_flight)
                try:
                    keep, upstream = await self.serve(request, writer, upstream)
                finally:
                    injector.in_flight -= 1
                if not keep or request.wants_close:
                    return
        except (OSError, ProtocolError, asyncio.TimeoutError):
            return
        except asyncio.IncompleteReadError:
            return
        finally:
            if upstream is not None:
                await close(upstream[1])
            await close(writer)

    async def serve(
        self,
        request: Request,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """Answer one request; whether to keep the client connection, upstream."""
        injector = self.injector
        kind, delay = injector.choose(request)
        serial = injector.requests
        if kind == "drop":
            return False, upstream
        if kind in ERRORS:
            writer.write(error_response(*ERRORS[kind], request, serial))
            await writer.drain()
            return True, upstream
        if kind == "fail_key":
            code = injector.config.fail_code
            status, reason = FAIL_CODES[code]
            message = "Injected failure for this key."
            writer.write(error_response(status, reason, code, message, request, serial))
            await writer.drain()
            return True, upstream
        if kind == "delay":
            await asyncio.sleep(delay)
        if upstream is None:
            upstream = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port, limit=MAX_HEAD),
                IDLE_TIMEOUT,
            )
        up_reader, up_writer = upstream
        up_writer.write(request.encode())
        await up_writer.drain()
        response = await read_response(up_reader, request.method)
        injector.forwarded += 1
        if kind == "lost":
            return False, upstream
        writer.write(response.raw)
        await writer.drain()
        if response.close:
            await close(up_writer)
            return False, None
        return True, upstream


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def serve(
    target_port: int,
    config: Config,
    port_file: str,
    port: int,
    lifetime: float,
    parent: int,
) -> None:
    proxy = Proxy(target_port, config)
    server = await asyncio.start_server(
        proxy.handle, "127.0.0.1", port, backlog=1024, limit=MAX_HEAD
    )
    write_port_file(port_file, server.sockets[0].getsockname()[1])
    deadline = time.monotonic() + lifetime
    try:
        # Stop by ourselves: at the end of our lifetime, or when orphaned.
        while time.monotonic() < deadline and os.getppid() == parent:
            await asyncio.sleep(0.5)
    finally:
        # Not wait_closed(): it would wait for idle keep-alive clients.
        # asyncio.run cancels the connections' tasks, which close them.
        server.close()


class FaultProxy(ChildServer):
    """Handle on a fault-injecting proxy running in a child process."""

    module = "tests.servers.fault_proxy"
    title = "the fault proxy"
    prefix = "fault-proxy-"

    def __init__(
        self,
        target_port: int,
        seed: int = 0,
        fault_rate: float = 0.0,
        fail_keys: tuple[str, ...] = (),
        throttle_seconds: float = 0.0,
        throttle_on: str = "*",
        lifetime: float = 1800.0,
    ) -> None:
        super().__init__()
        self.target_port = target_port
        self.seed = seed
        self.fault_rate = fault_rate
        self.fail_keys = fail_keys
        self.throttle_seconds = throttle_seconds
        self.throttle_on = throttle_on
        self.lifetime = lifetime

    def arguments(self) -> list[str]:
        args = [
            *("--target-port", str(self.target_port)),
            *("--seed", str(self.seed)),
            *("--fault-rate", str(self.fault_rate)),
            *("--throttle-seconds", str(self.throttle_seconds)),
            *("--throttle-on", self.throttle_on),
            *("--max-lifetime", str(self.lifetime)),
            *("--parent-pid", str(os.getpid())),
        ]
        for key in self.fail_keys:
            args += ["--fail-key", key]
        return args

    def _call(self, path: str, body: bytes | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint_url + CONTROL_PATH + path,
            data=body,
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
        return document

    def faults(self) -> dict[str, Any]:
        """Requests seen and forwarded, faults by kind, recent events."""
        return self._call("")

    def reset(self) -> dict[str, Any]:
        return self._call("/reset", b"")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """New settings (Config's fields); restarts the per-request counts
        and the throttle window."""
        return self._call("/config", json.dumps(changes).encode())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--fail-key", action="append", default=[])
    parser.add_argument("--fail-code", default="InvalidRequest")
    parser.add_argument("--throttle-seconds", type=float, default=0.0)
    parser.add_argument("--throttle-on", default="*", metavar="METHOD")
    parser.add_argument("--max-lifetime", type=float, default=3600.0)
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=os.getppid(),
        help="exit when this process is no longer our parent",
    )
    args = parser.parse_args()
    config = Config(
        fault_rate=args.fault_rate,
        seed=args.seed,
        fail_keys=list(args.fail_key),
        fail_code=args.fail_code,
        throttle_seconds=args.throttle_seconds,
        throttle_on=args.throttle_on,
    )
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    asyncio.run(
        serve(
            args.target_port,
            config,
            args.port_file,
            args.port,
            args.max_lifetime,
            args.parent_pid,
        )
    )


if __name__ == "__main__":
    main()
