"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time.

Run as ``python -m tests.servers.latency_proxy --target-port P --delay-ms 10
--port-file FILE``: it binds 127.0.0.1 on a free port, writes the port to FILE
and serves until killed. Each chunk read from either side is written to the
other side ``delay_ms`` after it arrived, so 10 ms each way adds 20 ms to every
round trip. Order within a connection is kept, connections do not wait for
each other, and a half-close (EOF) is forwarded after the same delay.

Tests and benchmarks use :class:`LatencyProxy`, which starts and stops that
process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .child import ChildServer, write_port_file
from .lifetime import exit_with_parent

CHUNK_SIZE = 64 * 1024
# Chunks in flight per direction; a full queue stops reading (backpressure).
MAX_QUEUED_CHUNKS = 256


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy reader to writer, each chunk ``delay`` seconds after it arrived.

    EOF is forwarded as a half-close; a read error is raised (after the chunks
    before it), which ends the whole connection.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(MAX_QUEUED_CHUNKS)

    async def read_side() -> None:
        while True:
            try:
                chunk: bytes | None = await reader.read(CHUNK_SIZE)
            except OSError:
                chunk = None
            await queue.put((loop.time() + delay, chunk))
            if not chunk:  # EOF (b"") or error (None) travels like data.
                return

    async def write_side() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                raise ConnectionResetError("the other side went away")
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    reading = asyncio.ensure_future(read_side())
    try:
        await write_side()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target_port: int,
    delay: float,
) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(
            "127.0.0.1", target_port
        )
    except OSError:
        await close(client_writer)
        return
    directions = [
        asyncio.ensure_future(pump(client_reader, target_writer, delay)),
        asyncio.ensure_future(pump(target_reader, client_writer, delay)),
    ]
    try:
        # Both halves end on EOF; an error on either side ends the connection.
        await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in directions:
            task.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
        await close(client_writer)
        await close(target_writer)


async def serve(target_port: int, delay_ms: float, port_file: str, port: int) -> None:
    delay = delay_ms / 1000

    async def on_connect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await handle(reader, writer, target_port, delay)

    server = await asyncio.start_server(on_connect, "127.0.0.1", port, backlog=1024)
    write_port_file(port_file, server.sockets[0].getsockname()[1])
    exit_with_parent()
    async with server:
        await server.serve_forever()


class LatencyProxy(ChildServer):
    """Handle on a latency proxy running in a child process."""

    module = "tests.servers.latency_proxy"
    title = "the latency proxy"
    prefix = "latency-proxy-"

    def __init__(self, target_port: int, delay_ms: float, port: int = 0) -> None:
        super().__init__()
        self.target_port = target_port
        self.delay_ms = delay_ms
        #: The port to listen on (0: any free one).
        self.wanted_port = port

    def arguments(self) -> list[str]:
        return [
            *("--target-port", str(self.target_port)),
            *("--delay-ms", str(self.delay_ms)),
            *("--port", str(self.wanted_port)),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.target_port, args.delay_ms, args.port_file, args.port))


if __name__ == "__main__":
    main()
