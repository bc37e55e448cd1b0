"""Minify CSS with rcssmin and JS with rjsmin, safely, before anything hashes.

:meth:`Minifier.apply` takes a file's path and bytes and returns the bytes to
write and what happened. It never raises: a file it should not or cannot
minify is returned unchanged, with the reason. Left alone by default:

- files whose name says they are minified (``*.min.css``, ``*.min.js``) or
  whose content clearly is (very long lines);
- files that reference a source map (``sourceMappingURL``): minifying drops
  the reference and would make the map wrong;
- JS with template literals nested inside ``${...}``, or a backtick in a
  string, comment or regular expression there, which rjsmin mangles (spaces
  inside the template are removed; rjsmin issues #18 and #22); JS with a
  regular expression where rjsmin expects a division (after ``=>``, or
  ``yield``), or an escape in a name;
- CSS whose minified ``url(...)`` references would differ from the source's
  (rcssmin 1.3 drops the spaces inside ``url("a b.png")``);
- JS in which a manifest storage's own patterns would find other references
  than in the source (Django's miss rjsmin's ``export*from"./a.js"``);
- anything that is not UTF-8, and any minifier error.

``/*! ... */`` comments (licences) are kept.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import io
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import rcssmin
import rjsmin
from django.core.files import File
from django.core.files.storage import Storage

from .jsscan import js_trouble
from .options import MinifySettings
from .report import Report
from .sources import Source, mixed

SOURCE_MAP = re.compile(rb"[#@]\s*sourceMappingURL\s*=")
#: Changed when what is left unminified changes: files are then decided again.
RULES = 4  # 2: CSS url()s; 3: a backtick in ${...}, a storage's references; 4: regexes
#: A CSS ``url(...)``: its quoted or bare reference.
CSS_URL = re.compile(
    r"""url\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([^)"'\s]*))\s*\)""", re.I
)
#: A comment the minifier drops (it keeps ``/*! ... */``).
CSS_COMMENT = re.compile(r"/\*(?!!).*?\*/", re.S)
#: Content with a line this long, or lines this long on average, is minified.
LONG_LINE = 2000
LONG_AVERAGE = 300


@dataclass(frozen=True)
class Outcome:
    """What minification did to one file."""

    minified: bool
    before: int
    after: int
    reason: str = ""


class Minifier:
    def __init__(
        self, settings: MinifySettings, destination: Storage | None = None
    ) -> None:
        self.settings = settings
        #: The references a manifest storage rewrites: its private ``_patterns``
        #: ({"*.js": [(regex, template, comments and strings regex), ...]}).
        patterns = getattr(destination, "_patterns", None)
        self.patterns: dict[str, list[tuple[Any, ...]]] = patterns or {}

    @cached_property
    def key(self) -> str:
        """Identifies settings and minifier versions: a change re-minifies."""
        settings = self.settings
        parts = {
            "include": settings.include,
            "exclude": settings.exclude,
            "source_mapped": settings.source_mapped,
            "rcssmin": rcssmin.__version__,
            "rjsmin": rjsmin.__version__,
            "rules": RULES,
            # What is left unminified depends on what the storage rewrites.
            "patterns": {
                extension: [
                    [getattr(part, "pattern", part) for part in entry]
                    for entry in entries
                ]
                for extension, entries in self.patterns.items()
            },
        }
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def applies_to(self, path: str) -> bool:
        """Whether ``path`` is a candidate at all (enabled, included, not excluded)."""
        settings = self.settings
        if not settings.enabled or _kind(path) is None:
            return False
        name = posixpath.basename(path)
        included = any(_match(path, name, p) for p in settings.include)
        return included and not any(_match(path, name, p) for p in settings.exclude)

    def apply(self, path: str, data: bytes) -> tuple[bytes, Outcome]:
        kind = _kind(path)
        if kind is None or not self.applies_to(path):
            return data, Outcome(False, len(data), len(data))
        reason = self.reason_to_skip(path, kind, data)
        if reason:
            return data, Outcome(False, len(data), len(data), reason)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data, Outcome(False, len(data), len(data), "not UTF-8")
        try:
            minify = rcssmin.cssmin if kind == "css" else rjsmin.jsmin
            result = minify(text, keep_bang_comments=True)
        except Exception as error:  # a minifier bug must not stop a deploy
            reason = f"minifier error: {type(error).__name__}: {error}"
            return data, Outcome(False, len(data), len(data), reason)
        output = result.encode("utf-8")
        if kind == "css" and _urls(result) != _urls(CSS_COMMENT.sub("", text)):
            return data, Outcome(False, len(data), len(data), "would change a url()")
        if kind == "js" and self.rewritten(path, result) != self.rewritten(path, text):
            reason = "would change a reference the storage rewrites"
            return data, Outcome(False, len(data), len(data), reason)
        if len(output) >= len(data):
            return data, Outcome(False, len(data), len(data), "no smaller")
        return output, Outcome(True, len(data), len(output))

    def rewritten(self, path: str, text: str) -> list[str]:
        """The references the destination storage rewrites in ``text``, found as
        Django's post_process finds them (not in comments or strings). Source
        map references are left out: the minifier drops them, on request."""
        found = []
        for extension, patterns in self.patterns.items():
            if not fnmatch.fnmatchcase(path, extension):
                continue
            for pattern, _template, *ignored in patterns:
                skipped = ignored[0].finditer(text) if ignored else ()
                blocks = [block.span() for block in skipped]
                starts = [start for start, _end in blocks]
                for match in pattern.finditer(text):
                    at = bisect.bisect_left(starts, match.start()) - 1
                    if at >= 0 and match.start() < blocks[at][1]:
                        continue  # in a comment or a string
                    if "sourcemappingurl" not in match.group(0).lower():
                        found.append(match.group("url"))
        return found

    def reason_to_skip(self, path: str, kind: str, data: bytes) -> str:
        if reason := named_minified(path):
            return reason
        if _looks_minified(data):
            return "already minified (content)"
        if SOURCE_MAP.search(data) and not self.settings.source_mapped:
            return "references a source map"
        return js_trouble(data) if kind == "js" else ""


def named_minified(path: str) -> str:
    """Why the file is left as it is, by its name alone ("" if it is not)."""
    minified = posixpath.basename(path).endswith((".min.css", ".min.js"))
    return "already minified (name)" if minified else ""


def _urls(css: str) -> list[str]:
    """Every ``url()``'s reference, in order."""
    return ["".join(found) for found in CSS_URL.findall(css)]


def _kind(path: str) -> str | None:
    if path.endswith(".css"):
        return "css"
    if path.endswith((".js", ".mjs")):
        return "js"
    return None


def _match(path: str, name: str, pattern: str) -> bool:
    target = path if "/" in pattern else name
    return fnmatch.fnmatchcase(target, pattern)


def _looks_minified(data: bytes) -> bool:
    """A line LONG_LINE long, or lines LONG_AVERAGE long on average (lines as
    ``splitlines`` counts them, but without copying them)."""
    ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    lines = ends + (not data.endswith((b"\n", b"\r")))
    if len(data) / lines >= LONG_AVERAGE:
        return True
    start = 0  # a line's start: the next LONG_LINE bytes hold a line end, or it is long
    while start + LONG_LINE <= len(data):
        end = start + LONG_LINE
        last = max(data.rfind(b"\n", start, end), data.rfind(b"\r", start, end))
        if last < 0:
            return True
        start = last + 1
    return False


class MinifyingStorage:
    """A finder's storage as seen for one file: opening it gives minified bytes.

    Every reader of the source (hashing, copying, the storage's
    ``post_process``) opens it through this, so the destination, the sync
    record and hashed names all describe the minified content. The source
    file itself is only read.
    """

    #: What it gives is not the file: its modification time says nothing.
    transforms = True

    def __init__(
        self,
        storage: Storage,
        name: str,
        minifier: Minifier,
        note: Callable[[str, Outcome], None],
    ) -> None:
        self._storage = storage
        self._name = name
        self._minifier = minifier
        self._note = note

    def open(self, path: str, mode: str = "rb") -> File:  # type: ignore[type-arg]
        handle = self._storage.open(path, "rb")
        if reason := named_minified(self._name):  # read as it is, in chunks
            self._note(self._name, Outcome(False, handle.size, handle.size, reason))
            return handle
        with handle:
            data = handle.read()
        output, outcome = self._minifier.apply(self._name, data)
        self._note(self._name, outcome)
        return File(io.BytesIO(output), name=self._name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._storage, attribute)


class SourceMinifier:
    """Makes the sources to minify read minified, and reports each outcome."""

    def __init__(
        self,
        settings: MinifySettings,
        report: Report,
        warn: Callable[[str], None],
        destination: Storage | None = None,
    ) -> None:
        self.minifier = Minifier(settings, destination)
        self.report = report
        self.warn = warn
        self.warned: set[str] = set()

    def wrap(self, source: Source) -> Source:
        """The source as it is written: every reader sees the minified bytes,
        and its stat token also depends on the minifier's settings."""
        if not self.minifier.applies_to(source.prefixed_path):
            return source
        storage = MinifyingStorage(
            source.storage, source.prefixed_path, self.minifier, self.note
        )
        token = source.token
        token = None if token is None else mixed(token, self.minifier.key)
        return replace(source, storage=storage, token=token)  # type: ignore[arg-type]

    def note(self, path: str, outcome: Outcome) -> None:
        trouble = outcome.reason.startswith(("not UTF-8", "would change", "minifier"))
        if trouble and path not in self.warned:
            self.warned.add(path)
            self.warn(f"Not minified '{path}' ({outcome.reason}); left as it is.")
        entry = asdict(outcome)  # minified, before, after and any reason
        if not outcome.reason:
            del entry["reason"]
        self.report.minify(path, entry)
