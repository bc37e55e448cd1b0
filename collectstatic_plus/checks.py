"""System checks: app order and the ``COLLECTSTATIC_PLUS`` setting.

They carry the ``staticfiles`` tag, so ``collectstatic`` runs them before it
starts, like Django's own staticfiles checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from .conf import DEFAULTS, SETTING_NAME
from .record import is_safe_path

APP = "collectstatic_plus"
STATICFILES = "django.contrib.staticfiles"


def register() -> None:
    checks.register(check_app_order, checks.Tags.staticfiles)
    checks.register(check_settings, checks.Tags.staticfiles)


def check_app_order(**kwargs: Any) -> list[checks.CheckMessage]:
    names = [config.name for config in apps.get_app_configs()]
    if APP not in names:
        return []
    if STATICFILES not in names:
        return [
            checks.Error(
                f"{APP} needs {STATICFILES} in INSTALLED_APPS.",
                hint=f"Add '{STATICFILES}' to INSTALLED_APPS, after '{APP}'.",
                id="collectstatic_plus.E002",
            )
        ]
    if names.index(APP) > names.index(STATICFILES):
        return [
            checks.Error(
                f"'{APP}' is listed after '{STATICFILES}' in INSTALLED_APPS, so "
                "Django's own collectstatic command runs instead of ours.",
                hint=f"Move '{APP}' above '{STATICFILES}' in INSTALLED_APPS.",
                id="collectstatic_plus.E001",
            )
        ]
    return []


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    if APP not in {config.name for config in apps.get_app_configs()}:
        return []
    value = getattr(settings, SETTING_NAME, {})
    if not isinstance(value, Mapping):
        return [
            checks.Error(
                f"{SETTING_NAME} must be a dict, not {type(value).__name__}.",
                hint=f"Use {SETTING_NAME} = {{'WORKERS': 32}}, for example.",
                id="collectstatic_plus.E003",
            )
        ]
    errors: list[checks.CheckMessage] = []
    unknown = sorted(str(key) for key in value if key not in DEFAULTS)
    if unknown:
        errors.append(
            checks.Error(
                f"{SETTING_NAME} has unknown key(s): {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="collectstatic_plus.E004",
            )
        )
    workers = value.get("WORKERS")
    if workers is not None and not is_positive_int(workers):
        errors.append(
            checks.Error(
                f"{SETTING_NAME}['WORKERS'] must be a positive integer or None, "
                f"not {workers!r}.",
                hint="None picks a default from the destination (local or remote).",
                id="collectstatic_plus.E005",
            )
        )
    name = value.get("RECORD_NAME")
    if name is not None and not is_safe_path(name):
        errors.append(
            checks.Error(
                f"{SETTING_NAME}['RECORD_NAME'] must be a relative path inside "
                f"the destination, not {name!r}.",
                hint="For example '.collectstatic-plus.json' or 'meta/sync.json'.",
                id="collectstatic_plus.E006",
            )
        )
    keep = value.get("KEEP_MANIFESTS")
    if keep is not None and not is_positive_int(keep):
        errors.append(
            checks.Error(
                f"{SETTING_NAME}['KEEP_MANIFESTS'] must be a positive integer, "
                f"not {keep!r}.",
                hint="1 keeps only the current manifest's files.",
                id="collectstatic_plus.E007",
            )
        )
    for key in ("MINIFY", "MINIFY_SOURCE_MAPPED"):
        if key in value and not isinstance(value[key], bool):
            errors.append(
                checks.Error(
                    f"{SETTING_NAME}['{key}'] must be True or False, not "
                    f"{value[key]!r}.",
                    id="collectstatic_plus.E008",
                )
            )
    for key in ("MINIFY_INCLUDE", "MINIFY_EXCLUDE"):
        patterns = value.get(key, [])
        if not isinstance(patterns, list | tuple) or not all(
            isinstance(p, str) for p in patterns
        ):
            errors.append(
                checks.Error(
                    f"{SETTING_NAME}['{key}'] must be a list of glob patterns, not "
                    f"{patterns!r}.",
                    hint="For example ['*.css', 'vendor/*.js'].",
                    id="collectstatic_plus.E009",
                )
            )
    for key in ("RETRIES", "RETRY_BUDGET"):
        number = value.get(key)
        if number is not None and (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or number <= 0
        ):
            errors.append(
                checks.Error(
                    f"{SETTING_NAME}['{key}'] must be a positive number, not "
                    f"{number!r}.",
                    id="collectstatic_plus.E010",
                )
            )
    return errors


def is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
