"""Decide, per file, what the destination needs: pure functions of what we know.

Inputs: the source's content digest, what a listing of the destination says
(if the backend can list), what the sync record says we wrote (if there is a
trustworthy one), and the user's ``--force``/``--verify``. Wherever a listing
or a record speaks, content decides, never modification times; with neither,
stock's own rule is used.

This is the one place where a file is found unchanged: :func:`recorded_digest`
(no need to read the source) and :func:`decide` (no need to write it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .backends.base import Listing, Remote
from .digest import Digest
from .record import Entry, Record
from .sources import Source


class Action(enum.Enum):
    SKIP = "skip"  # the destination holds this content
    COPY = "copy"  # save the source (deleting what is there first if needed)
    CHECK = "check"  # read the destination's content and compare
    STOCK = "stock"  # nothing known: stock's exists + modification time rule


class Decision(NamedTuple):
    action: Action
    #: Whether the destination holds a file at this path; None: not known.
    exists: bool | None
    reason: str
    #: Size of what the destination holds there, when a listing said.
    old_size: int | None = None


NEW = Decision(Action.COPY, False, "new")


@dataclass(frozen=True)
class Knowledge:
    """What we know about the destination before copying anything."""

    listing: Listing | None
    record: Record | None
    #: Whether reading a destination file is cheap enough to compare content.
    cheap_reads: bool = False
    force: bool = False
    verify: bool = False
    #: Originals the post-processor removes each run (WhiteNoise's
    #: WHITENOISE_KEEP_ONLY_HASHED_FILES), with the MD5 each had: absent from
    #: the listing on purpose.
    consumed: Mapping[str, str] = field(default_factory=dict)

    def entry(self, path: str) -> Entry | None:
        """The record's entry for ``path``, unless ``--verify`` ignores it."""
        if self.record is None or self.verify:
            return None
        return self.record.files.get(path)


def recorded_digest(source: Source, known: Knowledge) -> Digest | None:
    """The source's content without reading it: the record's, if the file
    was not touched since the record saw it (same stat token)."""
    entry = None if known.force else known.entry(source.prefixed_path)
    if entry is None or source.token is None or entry.token != source.token:
        return None
    return entry.digest


def needs_digest(path: str, known: Knowledge) -> bool:
    """Whether deciding needs the source's digest before any copy.

    A file the listing does not have (or that ``--force`` copies anyway) is
    copied whatever its content: its digest is taken while copying, so a cold
    run reads each source once.
    """
    if known.listing is None:
        return True
    return not known.force and (path in known.listing or path in known.consumed)


def decide(path: str, source: Digest | None, known: Knowledge) -> Decision:
    """What to do with one file; ``source`` may be None if not needs_digest."""
    entry = known.entry(path)
    if known.listing is not None:
        return _with_listing(path, source, known, entry)
    assert source is not None
    if known.force:
        return Decision(Action.COPY, None, "forced")
    if known.verify:
        return Decision(Action.CHECK, None, "verify")
    if known.record is None:
        return Decision(Action.STOCK, None, "no record")
    if entry is None:
        return Decision(Action.STOCK, None, "not in record")
    return _by_md5(entry.md5, source, exists=True, how="record")


def _with_listing(
    path: str, source: Digest | None, known: Knowledge, entry: Entry | None
) -> Decision:
    assert known.listing is not None
    remote = known.listing.get(path)
    if remote is None:
        consumed = known.consumed.get(path)
        if consumed is not None and not known.force:
            assert source is not None
            if consumed == source.md5:
                return Decision(Action.SKIP, False, "removed by post-processing")
        return NEW
    size = remote.size
    if known.force:
        return Decision(Action.COPY, True, "forced", size)
    assert source is not None
    if remote.is_link:
        return Decision(Action.COPY, True, "replacing a symlink", size)
    if entry is not None and saw_same(entry, remote):
        return _by_md5(entry.md5, source, exists=True, how="record", old_size=size)
    if remote.md5 == source.md5:
        return Decision(Action.SKIP, True, "same content (etag)", size)
    if remote.etag is None and remote.size != source.size:
        return Decision(Action.COPY, True, "size differs", size)
    # An ETag that differs may still be this content stored differently
    # (gzipped, encrypted, multipart): only reading it can tell.
    if known.cheap_reads or known.verify:
        return Decision(Action.CHECK, True, "compare content", size)
    return Decision(Action.COPY, True, "content differs or unknown", size)


def saw_same(entry: Entry, remote: Remote) -> bool:
    """Whether the destination is as the record saw it right after writing."""
    seen = entry.seen
    if seen is None or seen.is_link != remote.is_link:
        return False
    if seen.etag is not None or remote.etag is not None:
        # An ETag names one version of an object: equal ETags, same object
        # (sizes are not compared: a gzipped object is smaller than its source).
        return seen.etag == remote.etag
    return seen.size == remote.size and (
        seen.mtime_ns is not None and seen.mtime_ns == remote.mtime_ns
    )


def _by_md5(
    md5: str, source: Digest, exists: bool, how: str, old_size: int | None = None
) -> Decision:
    """Skip when ``md5`` (from ``how``) is the source's, else copy."""
    if md5 == source.md5:
        return Decision(Action.SKIP, exists, f"same content ({how})", old_size)
    return Decision(Action.COPY, exists, f"changed ({how})", old_size)
