"""System checks: app order and the ``COLLECTSTATIC_PLUS`` setting.

They carry the ``staticfiles`` tag, so ``collectstatic`` runs them before it
starts, like Django's own staticfiles checks. The setting is judged by the
table in :mod:`.conf`, the same one the run reads it with.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from .conf import SETTING_NAME, problems

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
    return [
        checks.Error(problem.message, hint=problem.hint or None, id=problem.check_id)
        for problem in problems(value)
    ]
