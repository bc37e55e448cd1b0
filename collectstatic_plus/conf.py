"""Settings, read lazily from ``settings.COLLECTSTATIC_PLUS``.

One table, :data:`SETTINGS`, says for each key its default, what a valid
value is and the system check that reports a bad one. The checks
(:mod:`collectstatic_plus.checks`) and the run read it the same way, so a
value the checks accept is the value the run uses; a bad value that reaches
a run (checks skipped) stops it with the check's message.

Every attribute of :data:`conf` reads the Django setting when accessed, so
``override_settings`` works in tests. A leaf module but for :mod:`.paths`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .paths import is_safe_path

SETTING_NAME = "COLLECTSTATIC_PLUS"

#: Worker count for a bare ``--parallel`` when the destination is remote: the
#: work is waiting on the network, so far more threads than cores pay off.
REMOTE_WORKERS = 32


#: Worker count for a bare ``--parallel`` on a local destination: one.
#: Threads cost more than they save there (benchmarks/README.md: a cold copy
#: of 5,000 files took 1.5x as long with 2-8 threads as with one, and plain
#: ``shutil.copyfile`` 2.5x as long); ``--parallel N`` still uses N (a
#: network filesystem may gain).
LOCAL_WORKERS = 1


def _storage_aliases() -> set[str]:
    value = getattr(settings, "STORAGES", {})
    return set(value) if isinstance(value, Mapping) else set()


def is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_positive_number(value: object) -> bool:
    """A finite number above 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return 0 < float(value) < math.inf  # (the run uses it as a float)
    except OverflowError:  # a whole number beyond any float
        return False


def is_patterns(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


class Setting(NamedTuple):
    """One key of ``COLLECTSTATIC_PLUS``."""

    key: str
    default: Any
    #: Whether a value the user gave is acceptable.
    valid: Callable[[Any], bool]
    #: The system check that reports an unacceptable value, and what it says.
    check_id: str
    must_be: str
    hint: str
    #: How an accepted value is handed to the run.
    convert: Callable[[Any], Any] = lambda value: value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "WORKERS",
        None,
        lambda v: v is None or is_positive_int(v),
        "collectstatic_plus.E005",
        "a positive integer or None",
        "None picks a default from the destination (local or remote).",
    ),
    Setting(
        "RECORD_NAME",
        ".collectstatic-plus.json",
        is_safe_path,
        "collectstatic_plus.E006",
        "a relative path inside the destination",
        "For example '.collectstatic-plus.json' or 'meta/sync.json'.",
    ),
    Setting(
        "KEEP_MANIFESTS",
        3,
        is_positive_int,
        "collectstatic_plus.E007",
        "a positive integer",
        "1 keeps only the current manifest's files.",
    ),
    Setting(
        "MINIFY",
        False,
        lambda v: isinstance(v, bool),
        "collectstatic_plus.E008",
        "True or False",
        "True minifies CSS and JS as they are collected; --no-minify turns it off.",
    ),
    Setting(
        "MINIFY_INCLUDE",
        ("*.css", "*.js"),
        is_patterns,
        "collectstatic_plus.E009",
        "a list of glob patterns",
        "For example ['*.css', 'vendor/*.js'].",
        convert=tuple,
    ),
    Setting(
        "MINIFY_EXCLUDE",
        (),
        is_patterns,
        "collectstatic_plus.E009",
        "a list of glob patterns",
        "For example ['*.css', 'vendor/*.js'].",
        convert=tuple,
    ),
    Setting(
        "MINIFY_SOURCE_MAPPED",
        False,
        lambda v: isinstance(v, bool),
        "collectstatic_plus.E008",
        "True or False",
        "True also minifies files that name a source map (the map reference "
        "is dropped).",
    ),
    Setting(
        "RETRIES",
        4,
        is_positive_int,
        "collectstatic_plus.E010",
        "a positive whole number",
        "Attempts per storage call; 1 means no retry.",
    ),
    Setting(
        "RETRY_BUDGET",
        60,
        is_positive_number,
        "collectstatic_plus.E010",
        "a positive number of seconds",
        "Seconds after which a failed storage call is not retried.",
        convert=float,
    ),
    Setting(
        "CACHE_DIR",
        None,
        lambda v: (
            v is None
            or (
                isinstance(v, str | os.PathLike) and str(v) != "" and "\0" not in str(v)
            )
        ),
        "collectstatic_plus.E011",
        "a directory path or None",
        "A directory that outlives builds, e.g. a Docker cache mount.",
        convert=lambda v: None if v is None else str(v),
    ),
    Setting(
        "RECORD_STORAGE",
        None,
        lambda v: v is None or (isinstance(v, str) and v in _storage_aliases()),
        "collectstatic_plus.E013",
        "None or an alias of the STORAGES setting",
        "A storage nobody else reads, e.g. a private bucket or a local folder "
        "outside STATIC_ROOT.",
    ),
    Setting(
        "CACHE_MAX_SIZE",
        300 * 1024 * 1024,
        is_positive_int,
        "collectstatic_plus.E012",
        "a positive number of bytes",
        "The build cache drops its least recently used files beyond it.",
    ),
    Setting(
        "LEASE_WAIT",
        300,
        lambda v: is_positive_number(v) or (v == 0 and not isinstance(v, bool)),
        "collectstatic_plus.E014",
        "a number of seconds, 0 or more",
        "How long a run waits for another one on the same destination; 0 "
        "fails at once.",
        convert=float,
    ),
    Setting(
        "LEASE_TTL",
        120,
        lambda v: is_positive_number(v) and 3 <= v <= 86400,
        "collectstatic_plus.E015",
        "a number of seconds from 3 to 86400 (a day)",
        "How long the lease of a run that died (killed, machine lost) keeps "
        "others waiting; a live run renews it every third of this.",
        convert=float,
    ),
)

BY_KEY = {setting.key: setting for setting in SETTINGS}


class Problem(NamedTuple):
    """What is wrong with the setting, as a system check reports it."""

    message: str
    hint: str
    check_id: str


def problems(value: object) -> list[Problem]:
    """Everything wrong with a ``COLLECTSTATIC_PLUS`` value, in table order."""
    if not isinstance(value, Mapping):
        return [
            Problem(
                f"{SETTING_NAME} must be a dict, not {type(value).__name__}.",
                f"Use {SETTING_NAME} = {{'WORKERS': 32}}, for example.",
                "collectstatic_plus.E003",
            )
        ]
    found = []
    unknown = sorted(str(key) for key in value if key not in BY_KEY)
    if unknown:
        found.append(
            Problem(
                f"{SETTING_NAME} has unknown key(s): {', '.join(unknown)}.",
                f"Known keys: {', '.join(sorted(BY_KEY))}.",
                "collectstatic_plus.E004",
            )
        )
    for setting in SETTINGS:
        if setting.key in value and not setting.valid(value[setting.key]):
            found.append(_problem(setting, value[setting.key]))
    return found


def _problem(setting: Setting, value: object) -> Problem:
    return Problem(
        f"{SETTING_NAME}['{setting.key}'] must be {setting.must_be}, not {value!r}.",
        setting.hint,
        setting.check_id,
    )


class Settings:
    """The ``COLLECTSTATIC_PLUS`` values a run uses, read on each access."""

    def validate(self) -> None:
        """Raise ImproperlyConfigured with the first problem the checks report."""
        found = problems(getattr(settings, SETTING_NAME, {}))
        if found:
            raise ImproperlyConfigured(found[0].message)

    def value(self, key: str) -> Any:
        """The user's value for ``key`` if valid, else the default; a bad
        value raises ImproperlyConfigured with its check's message."""
        setting = BY_KEY[key]
        given = getattr(settings, SETTING_NAME, {})
        if not isinstance(given, Mapping):
            raise ImproperlyConfigured(problems(given)[0].message)
        if key not in given:
            return setting.convert(setting.default)
        if not setting.valid(given[key]):
            raise ImproperlyConfigured(_problem(setting, given[key]).message)
        return setting.convert(given[key])

    @property
    def WORKERS(self) -> int | None:
        return self.value("WORKERS")  # type: ignore[no-any-return]

    @property
    def RECORD_NAME(self) -> str:
        return str(self.value("RECORD_NAME"))

    @property
    def KEEP_MANIFESTS(self) -> int:
        return int(self.value("KEEP_MANIFESTS"))

    @property
    def MINIFY(self) -> bool:
        return bool(self.value("MINIFY"))

    @property
    def MINIFY_INCLUDE(self) -> tuple[str, ...]:
        return self.value("MINIFY_INCLUDE")  # type: ignore[no-any-return]

    @property
    def MINIFY_EXCLUDE(self) -> tuple[str, ...]:
        return self.value("MINIFY_EXCLUDE")  # type: ignore[no-any-return]

    @property
    def MINIFY_SOURCE_MAPPED(self) -> bool:
        return bool(self.value("MINIFY_SOURCE_MAPPED"))

    @property
    def RETRIES(self) -> int:
        return int(self.value("RETRIES"))

    @property
    def RETRY_BUDGET(self) -> float:
        return float(self.value("RETRY_BUDGET"))

    @property
    def CACHE_DIR(self) -> str | None:
        return self.value("CACHE_DIR")  # type: ignore[no-any-return]

    @property
    def RECORD_STORAGE(self) -> str | None:
        return self.value("RECORD_STORAGE")  # type: ignore[no-any-return]

    @property
    def CACHE_MAX_SIZE(self) -> int:
        return int(self.value("CACHE_MAX_SIZE"))

    @property
    def LEASE_WAIT(self) -> float:
        return float(self.value("LEASE_WAIT"))

    @property
    def LEASE_TTL(self) -> float:
        return float(self.value("LEASE_TTL"))


conf = Settings()
