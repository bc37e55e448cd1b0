"""The supported matrix: Django 4.2, 5.2, 6.0, 6.1 on Python 3.10-3.13.

``nox -l`` lists the sessions; ``nox -s "tests-3.10(django='4.2')"`` runs one.
CI (scripts/test.sh) runs the oldest and the newest pair; run them all with
``nox -s tests``. Django 6 needs Python 3.12 or later.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DJANGOS = {"4.2": "4.2.*", "5.2": "5.2.*", "6.0": "6.0.*", "6.1": "6.1.*"}
OLDEST = ("3.10", "4.2")
NEWEST = ("3.13", "6.1")
#: The oldest django-storages setup.cfg allows, tested with the oldest pair.
OLDEST_STORAGES = "django-storages==1.14.3"


def supported(python: str, django: str) -> bool:
    return not (django.startswith("6.") and python in ("3.10", "3.11"))


@nox.session(python=PYTHONS)
@nox.parametrize("django", list(DJANGOS))
def tests(session: nox.Session, django: str) -> None:
    """The pytest suite on one Python and one Django series."""
    if not supported(str(session.python), django):
        session.skip(f"Django {django} does not support Python {session.python}")
    pins = [f"django=={DJANGOS[django]}"]
    if (str(session.python), django) == OLDEST:
        pins.append(OLDEST_STORAGES)
    session.install("-e", ".[test]", *pins)
    session.run("python", "-m", "pytest", "-q", *session.posargs)
