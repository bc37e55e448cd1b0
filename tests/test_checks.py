"""System checks: app order and the COLLECTSTATIC_PLUS setting."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from collectstatic_plus.checks import check_app_order, check_settings, say_shadowed
from collectstatic_plus.conf import BY_KEY, SETTINGS, conf


def ids(messages: list[checks.CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


def test_app_listed_before_staticfiles_passes() -> None:
    assert check_app_order() == []


@override_settings(INSTALLED_APPS=["django.contrib.staticfiles", "collectstatic_plus"])
def test_app_listed_after_staticfiles_is_e001() -> None:
    [error] = check_app_order()
    assert error.id == "collectstatic_plus.E001"
    assert error.msg == (
        "'collectstatic_plus' is listed after 'django.contrib.staticfiles' in "
        "INSTALLED_APPS, so collectstatic is Django's own command, not ours."
    )
    assert error.hint == (
        "Move 'collectstatic_plus' above 'django.contrib.staticfiles' in "
        "INSTALLED_APPS."
    )


@override_settings(
    INSTALLED_APPS=[
        "django.contrib.staticfiles.apps.StaticFilesConfig",
        "collectstatic_plus.apps.CollectstaticPlusConfig",
    ]
)
def test_app_order_is_read_from_app_configs_not_strings() -> None:
    assert ids(check_app_order()) == ["collectstatic_plus.E001"]


@override_settings(INSTALLED_APPS=["collectstatic_plus"])
def test_missing_staticfiles_is_e002() -> None:
    assert ids(check_app_order()) == ["collectstatic_plus.E002"]


@override_settings(INSTALLED_APPS=["django.contrib.staticfiles"])
def test_checks_are_silent_when_the_app_is_not_installed() -> None:
    assert check_app_order() == []
    assert check_settings() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, []),
        ({"WORKERS": None}, []),
        ({"WORKERS": 16}, []),
        ([("WORKERS", 4)], ["collectstatic_plus.E003"]),
        ({"WORKRES": 4}, ["collectstatic_plus.E004"]),
        ({"WORKERS": 0}, ["collectstatic_plus.E005"]),
        ({"WORKERS": "8"}, ["collectstatic_plus.E005"]),
        ({"WORKERS": True}, ["collectstatic_plus.E005"]),
        (
            {"WORKERS": -3, "X": 1},
            ["collectstatic_plus.E004", "collectstatic_plus.E005"],
        ),
        ({"RECORD_NAME": "meta/sync.json"}, []),
        ({"RECORD_NAME": "../outside.json"}, ["collectstatic_plus.E006"]),
        ({"RECORD_NAME": "/abs.json"}, ["collectstatic_plus.E006"]),
        ({"RECORD_NAME": ""}, ["collectstatic_plus.E006"]),
        ({"KEEP_MANIFESTS": 1}, []),
        ({"KEEP_MANIFESTS": 0}, ["collectstatic_plus.E007"]),
        ({"KEEP_MANIFESTS": "3"}, ["collectstatic_plus.E007"]),
        ({"MINIFY": True, "MINIFY_EXCLUDE": ["vendor/*"]}, []),
        ({"MINIFY": "yes"}, ["collectstatic_plus.E008"]),
        ({"MINIFY_INCLUDE": "*.css"}, ["collectstatic_plus.E009"]),
        ({"RETRIES": 2, "RETRY_BUDGET": 0.5}, []),
        ({"RETRIES": 0}, ["collectstatic_plus.E010"]),
        ({"RETRIES": 2.5}, ["collectstatic_plus.E010"]),
        ({"RETRY_BUDGET": "1m"}, ["collectstatic_plus.E010"]),
        ({"CACHE_DIR": "/var/cache/static"}, []),
        ({"CACHE_DIR": ""}, ["collectstatic_plus.E011"]),
        ({"CACHE_MAX_SIZE": -1}, ["collectstatic_plus.E012"]),
        ({"RECORD_STORAGE": None}, []),
        ({"RECORD_STORAGE": "default"}, []),
        ({"RECORD_STORAGE": "records"}, ["collectstatic_plus.E013"]),
        ({"RECORD_STORAGE": {"BACKEND": "x"}}, ["collectstatic_plus.E013"]),
        ({"LEASE_WAIT": 0, "LEASE_TTL": 3}, []),
        ({"LEASE_WAIT": -1}, ["collectstatic_plus.E014"]),
        ({"LEASE_WAIT": "5m"}, ["collectstatic_plus.E014"]),
        ({"LEASE_WAIT": float("inf")}, ["collectstatic_plus.E014"]),
        ({"LEASE_WAIT": False}, ["collectstatic_plus.E014"]),
        ({"LEASE_WAIT": 10**400}, ["collectstatic_plus.E014"]),
        ({"RETRY_BUDGET": 10**400}, ["collectstatic_plus.E010"]),
        ({"CACHE_DIR": "a\0b"}, ["collectstatic_plus.E011"]),
        ({"LEASE_TTL": 2}, ["collectstatic_plus.E015"]),
        ({"LEASE_TTL": 86400}, []),
        ({"LEASE_TTL": float("inf")}, ["collectstatic_plus.E015"]),
    ],
)
def test_settings_are_validated(settings: Any, value: Any, expected: list[str]) -> None:
    settings.COLLECTSTATIC_PLUS = value
    assert ids(check_settings()) == expected


def test_every_setting_error_has_a_hint(settings: Any) -> None:
    settings.COLLECTSTATIC_PLUS = {key: object() for key in BY_KEY}
    errors = check_settings()
    assert len(errors) == len(BY_KEY)
    assert all(error.hint for error in errors)


def test_unknown_key_error_names_the_key_and_the_known_ones(settings: Any) -> None:
    settings.COLLECTSTATIC_PLUS = {"WORKRES": 4}
    [error] = check_settings()
    assert error.msg == "COLLECTSTATIC_PLUS has unknown key(s): WORKRES."
    assert error.hint == (
        "Known keys: CACHE_DIR, CACHE_MAX_SIZE, KEEP_MANIFESTS, LEASE_TTL, "
        "LEASE_WAIT, MINIFY, MINIFY_EXCLUDE, MINIFY_INCLUDE, "
        "MINIFY_SOURCE_MAPPED, RECORD_NAME, RECORD_STORAGE, RETRIES, "
        "RETRY_BUDGET, WORKERS."
    )


E001_TEXT = (
    "?: (collectstatic_plus.E001) 'collectstatic_plus' is listed after "
    "'django.contrib.staticfiles' in INSTALLED_APPS, so collectstatic is Django's "
    "own command, not ours.\n\tHINT: Move 'collectstatic_plus' above "
    "'django.contrib.staticfiles' in INSTALLED_APPS.\n"
)
WRONG_ORDER = ["django.contrib.staticfiles", "collectstatic_plus"]


@pytest.mark.parametrize(
    ("installed", "argv", "said"),
    [
        (WRONG_ORDER, ["manage.py", "collectstatic", "--parallel", "4"], E001_TEXT),
        (WRONG_ORDER, ["manage.py", "collectstatic", "--report=-"], E001_TEXT),
        (WRONG_ORDER, ["manage.py", "collectstatic", "--noinput"], ""),
        (WRONG_ORDER, ["manage.py", "migrate", "--check"], ""),
        (WRONG_ORDER[::-1], ["manage.py", "collectstatic", "--parallel"], ""),
    ],
)
def test_our_option_behind_the_stock_command_says_e001_before_argparse(
    installed: list[str], argv: list[str], said: str
) -> None:
    stream = io.StringIO()
    with override_settings(INSTALLED_APPS=installed):
        say_shadowed(argv, stream)
    assert stream.getvalue() == said


def test_manage_py_with_the_app_listed_last_names_the_cause_first(
    tmp_path: Path,
) -> None:
    (tmp_path / "wrong_order.py").write_text(
        textwrap.dedent(
            f"""
            from tests.settings import *
            INSTALLED_APPS = {WRONG_ORDER!r}
            STATIC_ROOT = {str(tmp_path / "root")!r}
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path(__file__).parents[1]}",
        "DJANGO_SETTINGS_MODULE": "wrong_order",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "--parallel"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(E001_TEXT + "usage: ")
    assert result.stderr.endswith(
        "collectstatic: error: unrecognized arguments: --parallel\n"
    )
    assert not (tmp_path / "root").exists()


def test_collectstatic_runs_the_checks_and_stops_on_errors(
    settings: Any, static_root: Any
) -> None:
    settings.COLLECTSTATIC_PLUS = {"WORKERS": 0}
    with pytest.raises(SystemCheckError) as raised:
        call_command("collectstatic", interactive=False, skip_checks=False)
    assert "collectstatic_plus.E005" in str(raised.value)
    assert not static_root.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"RETRIES": 2.5},
            "COLLECTSTATIC_PLUS['RETRIES'] must be a positive whole number, not 2.5.",
        ),
        (
            {"WORKERS": "lots"},
            "COLLECTSTATIC_PLUS['WORKERS'] must be a positive integer or None, "
            "not 'lots'.",
        ),
        ([("WORKERS", 4)], "COLLECTSTATIC_PLUS must be a dict, not list."),
    ],
)
def test_a_value_the_checks_refuse_stops_a_run_that_skipped_them(
    settings: Any, static_root: Any, value: Any, message: str
) -> None:
    settings.COLLECTSTATIC_PLUS = value
    assert check_settings()  # the checks refuse it ...
    with pytest.raises(ImproperlyConfigured) as raised:  # ... and so does a run
        call_command("collectstatic", interactive=False, verbosity=0)
    assert str(raised.value) == message
    assert not static_root.exists()


@pytest.mark.parametrize(
    ("key", "given", "used"),
    [
        ("WORKERS", 12, 12),
        ("WORKERS", None, None),
        ("RECORD_NAME", "meta/sync.json", "meta/sync.json"),
        ("KEEP_MANIFESTS", 1, 1),
        ("MINIFY", True, True),
        ("MINIFY_INCLUDE", ["*.css"], ("*.css",)),
        ("MINIFY_EXCLUDE", ("vendor/*",), ("vendor/*",)),
        ("MINIFY_SOURCE_MAPPED", True, True),
        ("RETRIES", 2, 2),
        ("RETRY_BUDGET", 0.5, 0.5),
        ("CACHE_DIR", "/var/cache/static", "/var/cache/static"),
        ("CACHE_MAX_SIZE", 1000, 1000),
    ],
)
def test_a_value_the_checks_accept_is_the_value_the_run_uses(
    settings: Any, key: str, given: Any, used: Any
) -> None:
    settings.COLLECTSTATIC_PLUS = {key: given}
    assert check_settings() == []
    assert getattr(conf, key) == used


def test_every_default_passes_its_own_check_and_is_what_the_run_uses(
    settings: Any,
) -> None:
    settings.COLLECTSTATIC_PLUS = {s.key: s.default for s in SETTINGS}
    assert check_settings() == []
    settings.COLLECTSTATIC_PLUS = {}
    for setting in SETTINGS:
        assert getattr(conf, setting.key) == setting.convert(setting.default)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("a\0b", "--cache-dir cannot contain a NUL character."),
        ("", "--cache-dir needs a directory."),  # (not the setting's, silently)
    ],
)
def test_a_cache_dir_option_that_names_no_directory_is_one_line(
    static_root: Any, settings: Any, tmp_path: Path, given: str, message: str
) -> None:
    settings.COLLECTSTATIC_PLUS = {"CACHE_DIR": str(tmp_path / "cache")}
    with pytest.raises(CommandError) as raised:
        call_command("collectstatic", interactive=False, cache_dir=given)
    assert str(raised.value) == message
    assert not static_root.exists()


def test_a_cache_dir_option_may_be_a_path_object(
    settings: Any, static_root: Path, tmp_path: Path
) -> None:
    settings.STATICFILES_DIRS = [str(tmp_path)]
    (tmp_path / "a.css").write_text("a")
    call_command("collectstatic", interactive=False, cache_dir=tmp_path / "cache")
    assert (static_root / "a.css").read_text() == "a"
