"""Property: an incremental run leaves what a forced run into a fresh directory
leaves, whatever the tree and whatever changed since the last run.

Hypothesis draws a small tree (names from a pool where no file is another's
directory, ignored names included; contents often of equal sizes) and a few
change sets: files written (added or modified, with a new modification time,
earlier or later than before), deleted, or only touched. After each change
set, collectstatic runs incrementally into one directory, and with
``--force`` into a fresh one; both are on local storage. With ``--delete``
the two trees must be equal (the sync record aside); without it, the
incremental one also keeps the files no longer collected, as they were when
last collected.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import read_tree, run_collectstatic

POOL = (
    "a.css",
    "b.js",
    "x.txt",
    "img/c.png",
    "img/d.png",
    "deep/e/f.txt",
    "deep/e/g.js",
    "deep/h.css",
    "deep/.hidden",  # ignored by default (".*")
    "backup.css~",  # ignored by default ("*~")
)
#: Contents of a few sizes, several of each size: equal sizes are common.
CONTENTS = st.one_of(
    st.sampled_from([b"", b"a", b"b", b"ab", b"ba", b"abc", b"xyz", b"body{}"]),
    st.binary(max_size=48),
)


@dataclass(frozen=True)
class Write:
    name: str
    content: bytes
    #: Seconds to move the new modification time away from any earlier one.
    shift: int


@dataclass(frozen=True)
class Delete:
    name: str


@dataclass(frozen=True)
class Touch:
    name: str
    shift: int


NAMES = st.sampled_from(POOL)
SHIFTS = st.integers(min_value=-(10**6), max_value=10**6)
OPERATIONS = st.one_of(
    st.builds(Write, NAMES, CONTENTS, SHIFTS),
    st.builds(Delete, NAMES),
    st.builds(Touch, NAMES, SHIFTS),
)
TREES = st.dictionaries(NAMES, CONTENTS, max_size=len(POOL))
CHANGE_SETS = st.lists(st.lists(OPERATIONS, min_size=1, max_size=5), max_size=4)


class Source:
    """The source tree; every write or touch gets a modification time no
    file had before, so a change is never hidden by an equal size and mtime
    (that quick check is documented: such a file is not read again)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = itertools.count(1)

    def stamp(self, path: Path, shift: int) -> None:
        # Unique per operation: 10**7 s apart, then shifted within +-10**6 s.
        seconds = 1_000_000_000 + next(self.clock) * 10**7 + shift
        nanoseconds = seconds * 10**9 + next(self.clock)
        os.utime(path, ns=(nanoseconds, nanoseconds))

    def apply(self, operation: Any) -> None:
        path = self.root / operation.name
        if isinstance(operation, Write):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(operation.content)
            self.stamp(path, operation.shift)
        elif isinstance(operation, Delete):
            path.unlink(missing_ok=True)
        elif path.exists():
            self.stamp(path, operation.shift)


def collect(source: Path, destination: Path, **options: Any) -> dict[str, bytes]:
    with override_settings(
        STATIC_ROOT=str(destination),
        STATICFILES_DIRS=[str(source)],
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            },
        },
    ):
        run_collectstatic(verbosity=0, **options)
    return read_tree(destination) if destination.exists() else {}


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    tree=TREES,
    change_sets=CHANGE_SETS,
    parallel=st.sampled_from([None, 3]),
    delete=st.booleans(),
)
def test_incremental_runs_leave_what_a_forced_fresh_run_leaves(
    tree: dict[str, bytes],
    change_sets: list[list[Any]],
    parallel: int | None,
    delete: bool,
) -> None:
    with tempfile.TemporaryDirectory(prefix="csp-property-") as tmp:
        root = Path(tmp)
        source = Source(root / "src")
        source.root.mkdir()
        for name, content in tree.items():
            source.apply(Write(name, content, 0))
        incremental = root / "incremental"
        last_collected: dict[str, bytes] = {}
        for step in range(len(change_sets) + 1):
            if step:
                for operation in change_sets[step - 1]:
                    source.apply(operation)
            fresh = collect(source.root, root / f"fresh{step}", force=True)
            found = collect(source.root, incremental, parallel=parallel, delete=delete)
            last_collected.update(fresh)
            if delete:
                assert found == fresh, step
            else:
                assert {name: found.get(name) for name in fresh} == fresh, step
                kept = {k: v for k, v in found.items() if k not in fresh}
                assert kept == {k: last_collected[k] for k in kept}, step
