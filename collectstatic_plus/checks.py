"""System checks: app order and the ``COLLECTSTATIC_PLUS`` setting.

They carry the ``staticfiles`` tag, so ``collectstatic`` runs them before it
starts, like Django's own staticfiles checks. The setting is judged by the
table in :mod:`.conf`, the same one the run reads it with.

With the app listed after ``django.contrib.staticfiles`` Django's own command
runs, and one of our options makes argparse stop it before any check runs:
:func:`say_shadowed`, called as the apps are ready, prints E001 first.
"""

from __future__ import annotations

from typing import Any, TextIO

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.management.base import CommandError, CommandParser

from .conf import SETTING_NAME, problems

APP = "collectstatic_plus"
STATICFILES = "django.contrib.staticfiles"


def register() -> None:
    checks.register(check_app_order, checks.Tags.staticfiles)
    checks.register(check_settings, checks.Tags.staticfiles)


def require_staticfiles() -> None:
    """The app check's error as one line, for a run that skipped the checks
    (stock's ``set_options`` would trace back without the staticfiles app)."""
    for error in check_app_order():
        if error.id == "collectstatic_plus.E002":  # (E001: ours is running)
            raise CommandError(error.msg)


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
                "collectstatic is Django's own command, not ours.",
                hint=f"Move '{APP}' above '{STATICFILES}' in INSTALLED_APPS.",
                id="collectstatic_plus.E001",
            )
        ]
    return []


def say_shadowed(argv: list[str], stream: TextIO) -> None:
    """Print E001 if ``argv`` runs ``collectstatic`` with one of our options
    while the stock command is in front: its parser is about to reject the
    option, and the system checks would only run after it. Nothing else."""
    if len(argv) < 3 or argv[1] != "collectstatic":
        return
    shadowed = [e for e in check_app_order() if e.id == "collectstatic_plus.E001"]
    given = {argument.split("=", 1)[0] for argument in argv[2:]}
    if shadowed and given & our_flags():
        stream.write(f"{shadowed[0]}\n")


def our_flags() -> set[str]:
    """The option strings this package adds to collectstatic."""
    from . import options  # here: only when the app order is wrong

    parser = CommandParser(add_help=False)
    options.add_arguments(parser)
    return {flag for action in parser._actions for flag in action.option_strings}


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    if APP not in {config.name for config in apps.get_app_configs()}:
        return []
    value = getattr(settings, SETTING_NAME, {})
    return [
        checks.Error(problem.message, hint=problem.hint or None, id=problem.check_id)
        for problem in problems(value)
    ]
