"""Settings for collectstatic-plus, read lazily from ``settings.COLLECTSTATIC_PLUS``.

Every property reads the Django setting when it is accessed, so
``override_settings`` works in tests. Values are validated by the system checks
in :mod:`collectstatic_plus.checks`; the properties fall back to defaults for
anything malformed so that the checks, not a traceback, report it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings

SETTING_NAME = "COLLECTSTATIC_PLUS"

#: Worker count for a bare ``--parallel`` when the destination is remote: the
#: work is waiting on the network, so far more threads than cores pay off.
REMOTE_WORKERS = 32


def local_workers() -> int:
    """Worker count for a bare ``--parallel`` on a local destination."""
    return min(32, (os.cpu_count() or 1) + 4)


DEFAULTS: dict[str, Any] = {
    # Threads used by a bare ``--parallel``; None picks by destination.
    "WORKERS": None,
    # Name of the sync record, relative to the destination storage's root.
    "RECORD_NAME": ".collectstatic-plus.json",
    # Manifests whose files ``--delete`` keeps (the current one included).
    "KEEP_MANIFESTS": 3,
    # Minify CSS (rcssmin) and JS (rjsmin) as they are collected.
    "MINIFY": False,
    # Glob patterns (on the file name, or the path if they contain "/").
    "MINIFY_INCLUDE": ["*.css", "*.js"],
    "MINIFY_EXCLUDE": [],
    # Also minify files that reference a source map (the map goes stale).
    "MINIFY_SOURCE_MAPPED": False,
    # Attempts per storage call on transient errors, and seconds for them all.
    "RETRIES": 4,
    "RETRY_BUDGET": 60,
}


class Settings:
    """Typed, lazily read view of the ``COLLECTSTATIC_PLUS`` setting."""

    @property
    def user_settings(self) -> Mapping[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        return value if isinstance(value, Mapping) else {}

    def get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @property
    def WORKERS(self) -> int | None:
        value = self.get("WORKERS")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return None

    @property
    def RECORD_NAME(self) -> str:
        value = self.get("RECORD_NAME")
        return value if isinstance(value, str) and value else DEFAULTS["RECORD_NAME"]

    @property
    def KEEP_MANIFESTS(self) -> int:
        value = self.get("KEEP_MANIFESTS")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        return int(DEFAULTS["KEEP_MANIFESTS"])

    @property
    def MINIFY(self) -> bool:
        return self.get("MINIFY") is True

    @property
    def MINIFY_INCLUDE(self) -> tuple[str, ...]:
        return _patterns(self.get("MINIFY_INCLUDE"), DEFAULTS["MINIFY_INCLUDE"])

    @property
    def MINIFY_EXCLUDE(self) -> tuple[str, ...]:
        return _patterns(self.get("MINIFY_EXCLUDE"), DEFAULTS["MINIFY_EXCLUDE"])

    @property
    def MINIFY_SOURCE_MAPPED(self) -> bool:
        return self.get("MINIFY_SOURCE_MAPPED") is True

    @property
    def RETRIES(self) -> int:
        value = self.get("RETRIES")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        return int(DEFAULTS["RETRIES"])

    @property
    def RETRY_BUDGET(self) -> float:
        value = self.get("RETRY_BUDGET")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(DEFAULTS["RETRY_BUDGET"])


def _patterns(value: object, default: list[str]) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return tuple(default)


conf = Settings()
