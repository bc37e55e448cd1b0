"""Generate a deterministic static tree to collect.

``python -m benchmarks.make_tree OUT [--files 5000] [--seed 1]`` writes OUT/ with
a mix that looks like a real project's static files: CSS, JS (some with source
maps), SVG icons, PNG/JPEG-like binaries and web fonts, in nested folders
(``app-07/css/...``, ``vendor/lib-3/...``). Most files are 1-30 KB and about 2%
are 100-300 KB. Binary payloads are random (incompressible); text is made of
plausible tokens. CSS ``url()`` references and JS ``sourceMappingURL``
comments only point at files that exist in the tree, so the tree also works
with manifest storage. The same files and seed always give the same bytes.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

# (kind, extension, share of the files)
KINDS = [
    ("css", ".css", 0.22),
    ("js", ".js", 0.30),
    ("svg", ".svg", 0.16),
    ("png", ".png", 0.16),
    ("jpg", ".jpg", 0.06),
    ("font", ".woff2", 0.06),
]
MAP_SHARE = 0.15  # of JS files, which get a source map next to them
BIG_SHARE = 0.02
WORD_LIST = (
    "color margin padding border display flex grid width height font weight "
    "position absolute relative transform opacity transition background none "
    "auto inherit block inline center left right top bottom solid hidden "
    "function return const let var if else for while document window event "
    "element value state props render module export import default this null "
    "true false new class extends async await promise then catch length push"
)
WORDS = WORD_LIST.split()
MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "font": b"wOF2\x00\x01\x00\x00",
}


@dataclass
class Entry:
    path: str  # relative, with "/" separators
    kind: str
    size: int
    has_map: bool = False


def pick_size(rng: random.Random) -> int:
    if rng.random() < BIG_SHARE:
        return rng.randint(100 * 1024, 300 * 1024)
    # Skewed towards the small end, like real assets.
    return int(1024 + (29 * 1024) * rng.random() ** 2)


def plan(files: int, rng: random.Random) -> list[Entry]:
    """Decide every file's path, kind and size (the bytes come later)."""
    names = [k for k, _, _ in KINDS]
    weights = [w for _, _, w in KINDS]
    extension = {k: ext for k, ext, _ in KINDS}
    folder = {
        "css": "css",
        "js": "js",
        "svg": "img/icons",
        "png": "img",
        "jpg": "img/photos",
        "font": "fonts",
    }
    apps = max(1, files // 250)
    entries: list[Entry] = []
    while len(entries) < files:
        kind = rng.choices(names, weights)[0]
        if rng.random() < 0.15:
            root = f"vendor/lib-{rng.randrange(max(1, apps // 2))}"
        else:
            root = f"app-{rng.randrange(apps):02d}"
        sub = folder[kind]
        if rng.random() < 0.3:
            sub += f"/part-{rng.randrange(4)}"
        # The running number keeps every path unique.
        path = f"{root}/{sub}/{kind}-{len(entries):05d}{extension[kind]}"
        entry = Entry(path, kind, pick_size(rng))
        entries.append(entry)
        if kind == "js" and len(entries) < files and rng.random() < MAP_SHARE:
            entry.has_map = True
            entries.append(Entry(path + ".map", "map", pick_size(rng)))
    return entries


def text(rng: random.Random, size: int, line: str) -> str:
    """Filler lines until roughly ``size`` characters."""
    out: list[str] = []
    length = 0
    while length < size:
        words = rng.choices(WORDS, k=rng.randint(3, 9))
        chunk = line.format(*words[:3], " ".join(words[3:]), rng.randrange(1000))
        out.append(chunk)
        length += len(chunk)
    return "".join(out)


def relative(from_file: str, to_file: str) -> str:
    return posixpath.relpath(to_file, posixpath.dirname(from_file))


def content(entry: Entry, rng: random.Random, targets: dict[str, list[str]]) -> bytes:
    if entry.kind in MAGIC:
        head = MAGIC[entry.kind]
        return head + rng.randbytes(max(0, entry.size - len(head)))
    if entry.kind == "svg":
        body = text(
            rng, entry.size - 120, '  <path d="M{4} {4}L{4} {4}" id="{0}-{1}"/>\n'
        )
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">\n'
            + body
            + "</svg>\n"
        ).encode()
    if entry.kind == "map":
        names = ", ".join(f'"{w}"' for w in rng.choices(WORDS, k=20))
        mappings = text(rng, entry.size - 100, "{0}{1};{4},")
        return (
            f'{{"version": 3, "names": [{names}], "mappings": "{mappings}"}}\n'
        ).encode()
    if entry.kind == "css":
        refs = []
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["png", "svg", "font", "jpg"])
            if targets[kind]:
                refs.append(relative(entry.path, rng.choice(targets[kind])))
        rules = "".join(
            f'.ref-{i} {{ background: url("{ref}") no-repeat; }}\n'
            for i, ref in enumerate(refs)
        )
        body = text(
            rng, entry.size - len(rules), ".{0}-{4} {{ {1}: {2}; /* {3} */ }}\n"
        )
        return (rules + body).encode()
    # js
    body = text(rng, entry.size, "function {0}_{4}({1}) {{ return {2}; }} // {3}\n")
    if entry.has_map:
        body += f"//# sourceMappingURL={posixpath.basename(entry.path)}.map\n"
    return body.encode()


def make_tree(out: Path, files: int = 5000, seed: int = 1) -> tuple[int, int]:
    """Write the tree into ``out`` (emptied first). Returns (files, bytes)."""
    rng = random.Random(seed)
    entries = plan(files, rng)
    targets: dict[str, list[str]] = {"png": [], "svg": [], "font": [], "jpg": []}
    for entry in entries:
        if entry.kind in targets:
            targets[entry.kind].append(entry.path)
    if out.exists():
        shutil.rmtree(out)
    total = 0
    for entry in entries:
        data = content(entry, rng, targets)
        target = out / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += len(data)
    return len(entries), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count, total = make_tree(args.out, args.files, args.seed)
    print(f"{count} files, {total / 1e6:.1f} MB in {args.out}{os.sep}")


if __name__ == "__main__":
    main()
