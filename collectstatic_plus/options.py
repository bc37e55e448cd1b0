"""The options we add to collectstatic, and what a run is told.

:func:`add_arguments` adds our flags beside stock's; :func:`run_options`
turns the parsed options (from the command line or ``call_command``) and the
settings into one :class:`RunOptions`, refusing values and combinations that
make no sense with one clear line.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser

from .backends.base import Backend
from .conf import LOCAL_WORKERS, REMOTE_WORKERS, conf
from .retry import first_line

#: A hashed copy's name (Django's: the MD5's first 12 hex digits before the
#: extension): the original's name, and its extension.
COPY = re.compile(r"((?:.*/)?[^/]*)\.[0-9a-f]{12}((?:\.[^./]*)?)")

AUTO = "auto"


class MinifySettings(NamedTuple):
    enabled: bool = False
    include: tuple[str, ...] = ("*.css", "*.js")
    exclude: tuple[str, ...] = ()
    source_mapped: bool = False


@dataclass(frozen=True)
class RunOptions:
    """Everything a run is told: stock's options and ours, settings resolved."""

    dry_run: bool = False
    clear: bool = False
    post_process: bool = True
    ignore_patterns: list[str] = field(default_factory=list)
    workers: int = 1
    force: bool = False
    verify: bool = False
    delete: bool = False
    #: With delete: files this package did not write go too.
    delete_unowned: bool = False
    max_delete: int | None = None
    keep_manifests: int = 3
    record_name: str = ".collectstatic-plus.json"
    #: The STORAGES alias the record is kept in (None: the destination).
    record_storage: str | None = None
    minify: MinifySettings = field(default_factory=MinifySettings)
    retries: int = 4
    retry_budget: float = 60.0
    #: A bare ``--parallel``: ``workers`` is picked by :meth:`for_destination`.
    auto_workers: bool = False
    #: The build cache of post-processing outputs (see cache.py), if any.
    cache_dir: str | None = None
    cache_max_bytes: int = 300 * 1024 * 1024
    #: How long to wait for another run's lease, and how long one lasts.
    lease_wait: float = 300.0
    lease_ttl: float = 120.0

    @property
    def lease_name(self) -> str:
        """The lease object, beside the sync record (see lease.py)."""
        return self.record_name + ".lease"

    @property
    def distrust(self) -> str:
        """The option that says not to trust what the destination holds."""
        return "--force" if self.force else "--verify" if self.verify else ""

    @property
    def own_files(self) -> tuple[str, ...]:
        """What this package keeps in the destination: no static files."""
        if self.record_storage is not None:
            return ()
        return (self.record_name, self.lease_name)

    def check_own_names(
        self, written: Collection[str], manifest: object, backend: Backend
    ) -> None:
        """A CommandError, before anything is written, if the sync record or
        its lease has the name of a file the run writes (or of its manifest),
        or, on local disk (in a bucket "a" and "a/b" can both be keys), of a
        folder of one, or a name inside one; as stored (a storage may store
        a file under another name)."""
        local, named = backend.local, backend.listed_name
        names = [*written, *([manifest] if isinstance(manifest, str) else [])]
        names = [named(name) for name in names]
        for name in map(named, self.own_files):
            parts = name.split("/")
            above = {"/".join(parts[:end]) for end in range(1, len(parts)) if local}
            inside = f"{name}/" if local else "\0"  # (no name starts with it)
            # A hashed or compressed copy of a file is post-processing's output.
            plain = name.removesuffix(".gz").removesuffix(".br")
            copy = COPY.fullmatch(plain)
            base = copy[1] + copy[2] if copy else plain
            if any(
                n in (name, base) or n in above or n.startswith(inside) for n in names
            ):
                raise CommandError(
                    f"'{name}' is both the sync record's name (or its lease's) "
                    "and a file this run writes: set COLLECTSTATIC_PLUS"
                    "['RECORD_NAME'] to another name."
                )

    def for_destination(self, local: bool) -> RunOptions:
        """These options with a bare ``--parallel``'s worker count picked:
        the WORKERS setting, else by destination."""
        if not self.auto_workers:
            return self
        count = conf.WORKERS or (LOCAL_WORKERS if local else REMOTE_WORKERS)
        return replace(self, workers=count, auto_workers=False)


def positive(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number of {what}, not {value!r}"
        )
    return number


def worker_count(value: str) -> int | str:
    """argparse type for ``--parallel N``: a positive number, or "auto"."""
    return AUTO if value == AUTO else positive(value, "workers")


def count(value: str) -> int:
    """argparse type for ``--max-delete``: zero or more."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(
            f"must be 0 or a positive number, not {value!r}"
        )
    return number


class StockFirstParser(CommandParser):
    """A parser on which stock's abbreviations keep their meaning beside our
    options (``--d`` is ``--dry-run``, not ambiguous with ``--delete``); only
    ``--force``, now an option's whole name, no longer means ``--force-color``."""

    ours: Collection[argparse.Action] = ()

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """argparse's prefix matches: stock's alone, if it has any."""
        matches: list[Any] = super()._get_option_tuples(option_string)
        return [m for m in matches if m[0] not in self.ours] or matches


def add_arguments(parser: CommandParser) -> None:
    """Our options, after stock's (see :class:`StockFirstParser`)."""
    stock = len(parser._actions)
    parser.add_argument(
        "--parallel",
        nargs="?",
        const=AUTO,
        default=None,
        type=worker_count,
        metavar="N",
        help=(
            "Copy or upload files with N threads. Without N (or with 'auto'): "
            f"the WORKERS setting, else {REMOTE_WORKERS} for a remote "
            f"destination and {LOCAL_WORKERS} for a local one."
        ),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="Copy every file, even those the destination already holds.",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="Ignore the sync record: check each file against the destination.",
    )
    parser.add_argument(
        "--delete",
        action="store_true",
        help=(
            "After a successful run, delete destination files this collection "
            "did not produce."
        ),
    )
    parser.add_argument(
        "--delete-unowned",
        action="store_true",
        help=(
            "With --delete: also delete files this package never wrote there "
            "(careful in a bucket other things share)."
        ),
    )
    parser.add_argument(
        "--max-delete",
        type=count,
        metavar="N",
        help="With --delete: stop, deleting nothing, if more than N are stale.",
    )
    parser.add_argument(
        "--minify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Minify CSS and JS as they are collected (default: the MINIFY setting).",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help=(
            "Write a JSON report of the run to FILE ('-': stdout, and every "
            "other line to stderr)."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=(
            "Dry run that exits with status 1 if anything would change "
            "(implies --dry-run)."
        ),
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=(
            "Keep post-processing outputs in DIR between builds and reuse them "
            "(default: the CACHE_DIR setting; none)."
        ),
    )
    parser.add_argument(
        "--keep-manifests",
        type=lambda value: positive(value, "manifests"),
        metavar="K",
        help=(
            "With --delete: keep the files named by the last K manifests "
            "(default: the KEEP_MANIFESTS setting, 3)."
        ),
    )
    parser.__class__ = StockFirstParser
    cast(StockFirstParser, parser).ours = parser._actions[stock:]


def run_options(options: dict[str, Any], symlink: bool) -> RunOptions:
    """What a run is told, from the command's parsed options and the settings
    (see :meth:`RunOptions.for_destination` for a bare ``--parallel``)."""
    conf.validate()
    deleting = options.get("delete") or options.get("delete_unowned")
    if deleting and symlink:
        flag = "--delete" if options.get("delete") else "--delete-unowned"
        raise _usage(f"{flag} cannot be combined with --link.")
    for flag in ("parallel", "force", "verify", "report", "check", "cache_dir"):
        if symlink and options.get(flag) not in (None, False):
            raise _usage(
                f"--{flag.replace('_', '-')} cannot be combined with --link "
                "(--link runs stock's own collection)."
            )
    minify = options.get("minify")
    minify = conf.MINIFY if minify is None else bool(minify)
    if minify and symlink:
        raise _usage(
            "--link cannot be combined with minification (--minify or the "
            "MINIFY setting): a symlink serves the source as it is."
        )
    keep = _number(options, "keep_manifests", minimum=1)
    max_delete = _number(options, "max_delete", minimum=0)
    for flag, given in (("--max-delete", max_delete), ("--keep-manifests", keep)):
        if given is not None and not deleting:
            raise _usage(f"{flag} applies only with --delete.")
    if max_delete is not None and options.get("clear"):  # (no limit to --clear)
        raise _usage("--max-delete cannot be combined with --clear.")
    count = workers(options.get("parallel"))
    cache_dir = options.get("cache_dir")
    if isinstance(cache_dir, os.PathLike):
        cache_dir = os.fspath(cache_dir)
    if cache_dir is not None and not isinstance(cache_dir, str):  # (bytes, a number)
        raise _usage(f"--cache-dir must be a directory path, not {cache_dir!r}.")
    if "\0" in (cache_dir or ""):
        raise _usage("--cache-dir cannot contain a NUL character.")
    if cache_dir == "":  # (the setting's check refuses it too)
        raise _usage("--cache-dir needs a directory.")
    return RunOptions(
        dry_run=bool(options.get("dry_run")),
        clear=bool(options.get("clear")),
        post_process=bool(options.get("post_process", True)),
        ignore_patterns=list(options.get("ignore_patterns") or []),
        workers=count or 1,
        auto_workers=count is None,
        force=bool(options.get("force")),
        verify=bool(options.get("verify")),
        delete=bool(deleting),
        delete_unowned=bool(options.get("delete_unowned")),
        max_delete=max_delete,
        keep_manifests=keep if keep is not None else conf.KEEP_MANIFESTS,
        record_name=conf.RECORD_NAME,
        record_storage=conf.RECORD_STORAGE,
        retries=conf.RETRIES,
        retry_budget=conf.RETRY_BUDGET,
        cache_dir=cache_dir or conf.CACHE_DIR,
        cache_max_bytes=conf.CACHE_MAX_SIZE,
        lease_wait=conf.LEASE_WAIT,
        lease_ttl=conf.LEASE_TTL,
        minify=MinifySettings(
            enabled=minify,
            include=conf.MINIFY_INCLUDE,
            exclude=conf.MINIFY_EXCLUDE,
            source_mapped=conf.MINIFY_SOURCE_MAPPED,
        ),
    )


def workers(parallel: object) -> int | None:
    """Workers for a ``--parallel`` value: 1 without one, None for "auto", N."""
    if parallel is None:
        return 1
    if isinstance(parallel, str):
        try:
            parallel = worker_count(parallel)
        except argparse.ArgumentTypeError as error:
            raise _usage(f"--parallel {error}.") from None
    if parallel == AUTO:
        return None
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise _usage(
            f"--parallel must be a positive whole number of workers, not {parallel!r}."
        )
    return parallel


def _usage(message: str) -> CommandError:
    """A refused option or combination: exit status 2, as argparse's."""
    return CommandError(message, returncode=2)


def _number(options: dict[str, Any], key: str, minimum: int) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        flag = "--" + key.replace("_", "-")
        raise _usage(f"{flag} must be a whole number >= {minimum}, not {value!r}.")
    return value


def storage_ready(touch: Callable[[], object]) -> None:
    """``touch`` builds the storage and asks it something: one that fails
    then (no credentials, an endpoint down, a manifest it cannot read) is
    one line. Stock's own errors are raised as they are (Django's tests)."""
    try:
        touch()
    except (ImproperlyConfigured, CommandError):
        raise
    except Exception as error:
        from django.conf import settings

        backend = settings.STORAGES.get("staticfiles", {}).get("BACKEND")
        raise CommandError(
            f"The static files storage ({backend}) could not be set up: "
            f"{first_line(error)}"
        ) from error


@contextmanager
def listing_without(storage: Any, names: Collection[str]) -> Iterator[None]:
    """``storage.listdir`` leaves out ``names`` (paths from its root) while the
    command runs: the sync record and lease are no static files to stock's
    prompt (which lists STATIC_ROOT by its absolute path) or ``clear_dir``."""
    storage = getattr(storage, "_wrapped", storage)  # staticfiles_storage, set up
    had, listdir = vars(storage).get("listdir"), storage.listdir
    root = getattr(storage, "location", None)

    def without(where: str) -> tuple[list[str], list[str]]:
        dirs, files = listdir(where)
        folder = "" if where == root and os.path.isabs(where) else where.strip("/")
        inside = f"{folder}/" if folder else ""
        return dirs, [name for name in files if inside + name not in names]

    storage.listdir = without
    try:
        yield
    finally:
        if had is None:
            del storage.listdir
        else:
            storage.listdir = had
