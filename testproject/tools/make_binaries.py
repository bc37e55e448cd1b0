"""Regenerate the binary static files of the test project (images, fonts).

The output is committed, so this only needs to run when the set of binary
files changes. The output is deterministic: running it twice gives the same
bytes, so git sees no change.

    cd testproject && ../.venv/bin/python tools/make_binaries.py

Images are real, decodable PNG/GIF/ICO files built with zlib and struct.
Fonts are not real fonts: they are pseudo-random bytes behind the right
magic number, which is all collectstatic (hashing, copying, uploading) cares
about.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Pixel = tuple[int, int, int]


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An 8-bit RGB PNG whose colour at (x, y) is ``pixel(x, y)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type: none
        for x in range(width):
            raw.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


def gif(rows: list[str], palette: dict[str, Pixel]) -> bytes:
    """A GIF89a drawn from ``rows`` of palette keys (at most four colours).

    The image data is LZW-coded the simplest valid way: a clear code before
    every pixel, so the code width stays at three bits and no dictionary
    entries are ever used. Larger than optimal, but trivially correct.
    """
    keys = list(palette)
    assert 1 <= len(keys) <= 4
    colours = [palette[k] for k in keys] + [(0, 0, 0)] * (4 - len(keys))
    width, height = len(rows[0]), len(rows)
    min_code_size = 2
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1

    codes: list[int] = []
    for row in rows:
        assert len(row) == width
        for ch in row:
            codes += [clear, keys.index(ch)]
    codes.append(end)

    bits = 0
    nbits = 0
    packed = bytearray()
    for code in codes:
        bits |= code << nbits
        nbits += 3
        while nbits >= 8:
            packed.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        packed.append(bits & 0xFF)

    sub_blocks = bytearray()
    for i in range(0, len(packed), 255):
        block = packed[i : i + 255]
        sub_blocks += bytes([len(block)]) + block
    sub_blocks.append(0)

    out = bytearray(b"GIF89a")
    # Logical screen: global colour table present, 2 bits/colour, size 2^2.
    out += struct.pack("<HHBBB", width, height, 0b1000_0001, 0, 0)
    for colour in colours:
        out += bytes(colour)
    # Graphic control extension: colour index 3 is transparent.
    out += b"\x21\xf9\x04\x01\x00\x00\x03\x00"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    out += bytes([min_code_size]) + sub_blocks
    out += b"\x3b"
    return bytes(out)


def ico(png_bytes: bytes, size: int) -> bytes:
    """A single-image .ico file that embeds a PNG (supported since Vista)."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(png_bytes), 22)
    return header + entry + png_bytes


def font(magic: bytes, size: int, seed: str) -> bytes:
    """Pseudo-random bytes of ``size`` that start like a font file."""
    rng = random.Random(seed)
    return magic + rng.randbytes(size - len(magic))


def gradient(top: Pixel, bottom: Pixel, height: int) -> Callable[[int, int], Pixel]:
    def pixel(x: int, y: int) -> Pixel:
        t = y / max(height - 1, 1)
        base = [round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)]
        # A faint diagonal stripe so the image is not a trivial gradient.
        if (x + y) % 24 < 3:
            base = [min(c + 18, 255) for c in base]
        return (base[0], base[1], base[2])

    return pixel


def checker(a: Pixel, b: Pixel, cell: int) -> Callable[[int, int], Pixel]:
    def pixel(x: int, y: int) -> Pixel:
        return a if (x // cell + y // cell) % 2 == 0 else b

    return pixel


def disc(fg: Pixel, bg: Pixel, size: int) -> Callable[[int, int], Pixel]:
    r = size / 2

    def pixel(x: int, y: int) -> Pixel:
        inside = (x + 0.5 - r) ** 2 + (y + 0.5 - r) ** 2 <= (r - 1) ** 2
        return fg if inside else bg

    return pixel


ARROW = [
    "............",
    ".....#......",
    ".....##.....",
    ".....#o#....",
    "#####ooo#...",
    "#oooooooo#..",
    "#oooooooo#..",
    "#####ooo#...",
    ".....#o#....",
    ".....##.....",
    ".....#......",
    "............",
]

CART = [
    "#...............",
    ".#..............",
    ".#############..",
    ".#ooooooooooo#..",
    "..#ooooooooo#...",
    "..#ooooooooo#...",
    "...#########....",
    "...#............",
    "...##########...",
    "....##....##....",
    "....##....##....",
    "................",
]


def build() -> dict[str, bytes]:
    blue, navy = (52, 101, 164), (16, 32, 64)
    white, grey = (255, 255, 255), (220, 222, 226)
    favicon_png = png(32, 32, disc(blue, white, 32))
    return {
        # Project-wide assets (STATICFILES_DIRS, no prefix).
        "assets/favicon.ico": ico(favicon_png, 32),
        "assets/images/hero banner.png": png(240, 80, gradient(blue, navy, 80)),
        "assets/images/icons/icon-192.png": png(192, 192, disc(blue, white, 192)),
        "assets/images/icons/ui/arrow.gif": gif(
            ARROW, {".": (255, 255, 255), "#": navy, "o": blue}
        ),
        "assets/fonts/inter-regular.woff2": font(b"wOF2", 6144, "inter-woff2"),
        "assets/fonts/inter-regular.woff": font(b"wOFF", 8192, "inter-woff"),
        "assets/fonts/inter-regular.ttf": font(b"\x00\x01\x00\x00", 12288, "ttf"),
        "assets/fonts/inter-regular.eot": font(b"\x00\x30\x00\x00", 9216, "eot"),
        # Third-party bundle (STATICFILES_DIRS with the "vendor" prefix).
        "third_party/minilib/minilib-sprite.png": png(64, 16, checker(grey, navy, 8)),
        "third_party/minilib/fonts/minilib-icons.woff2": font(
            b"wOF2", 2048, "minilib-woff2"
        ),
        "third_party/minilib/fonts/minilib-icons.woff": font(
            b"wOFF", 3072, "minilib-woff"
        ),
        # App static trees.
        "shop/static/shop/images/cart.gif": gif(
            CART, {".": (255, 255, 255), "#": navy, "o": (240, 180, 40)}
        ),
        "shop/static/shop/images/products/thumbs/placeholder.png": png(
            96, 96, checker(white, grey, 12)
        ),
        "blog/static/blog/images/avatar.png": png(48, 48, disc(navy, grey, 48)),
        "dashboard/static/dashboard/images/sprite.png": png(
            128, 32, checker(blue, white, 16)
        ),
    }


def main() -> None:
    for rel, data in build().items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {rel} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
