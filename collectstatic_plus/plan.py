"""Decide, per file, what the destination needs: a pure function of what we know.

Inputs: the source's content digest, what a listing of the destination says
(if the backend can list), what the sync record says we wrote (if there is a
trustworthy one), and the user's ``--force``/``--verify``. Wherever a listing
or a record speaks, content decides, never modification times; with neither,
stock's own rule is used.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .backends import Listing, Remote
from .record import Entry, Record
from .sources import Digest


class Action(enum.Enum):
    SKIP = "skip"  # the destination holds this content
    COPY = "copy"  # save the source (deleting what is there first if needed)
    CHECK = "check"  # read the destination's content and compare
    STOCK = "stock"  # nothing known: stock's exists + modification time rule


@dataclass(slots=True)  # not frozen: one per file, and frozen inits are slow
class Decision:
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


def needs_digest(path: str, known: Knowledge, force: bool) -> bool:
    """Whether deciding needs the source's digest before any copy.

    A file the listing does not have (or that ``--force`` copies anyway) is
    copied whatever its content: its digest is taken while copying, so a cold
    run reads each source once.
    """
    return known.listing is None or (not force and path in known.listing)


def decide(
    path: str,
    source: Digest | None,
    entry: Entry | None,
    known: Knowledge,
    force: bool,
    verify: bool,
) -> Decision:
    """What to do with one file; ``source`` may be None if not needs_digest.

    ``entry`` is the record's entry for the path, if it has one.
    """
    if known.listing is not None:
        return _with_listing(path, source, known, entry, force, verify)
    assert source is not None
    if force:
        return Decision(Action.COPY, None, "forced")
    if verify:
        return Decision(Action.CHECK, None, "verify")
    if known.record is None:
        return Decision(Action.STOCK, None, "no record")
    if entry is None:
        return Decision(Action.STOCK, None, "not in record")
    return _by_md5(entry.md5, source, exists=True, how="record")


def _with_listing(
    path: str,
    source: Digest | None,
    known: Knowledge,
    entry: Entry | None,
    force: bool,
    verify: bool,
) -> Decision:
    assert known.listing is not None
    remote = known.listing.get(path)
    if remote is None:
        return NEW
    size = remote.size
    if force:
        return Decision(Action.COPY, True, "forced", size)
    assert source is not None
    if remote.is_link:
        return Decision(Action.COPY, True, "replacing a symlink", size)
    if entry is not None and not verify and saw_same(entry, remote):
        return _by_md5(entry.md5, source, exists=True, how="record", old_size=size)
    if remote.md5 == source.md5:
        return Decision(Action.SKIP, True, "same content (etag)", size)
    if remote.etag is None and remote.size != source.size:
        return Decision(Action.COPY, True, "size differs", size)
    # An ETag that differs may still be this content stored differently
    # (gzipped, encrypted, multipart): only reading it can tell.
    if known.cheap_reads or verify:
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
    md5: int, source: Digest, exists: bool, how: str, old_size: int | None = None
) -> Decision:
    """Skip when ``md5`` (from ``how``) is the source's, else copy."""
    if md5 == source.md5:
        return Decision(Action.SKIP, exists, f"same content ({how})", old_size)
    return Decision(Action.COPY, exists, f"changed ({how})", old_size)
