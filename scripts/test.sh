#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. create/reuse .venv and install the package with its test extras;
#   2. ruff and mypy;
#   3. Django's own staticfiles tests with collectstatic_plus in front
#      (Django 4.2, 5.2, 6.0 and 6.1, see scripts/django_suite.sh);
#   4. the pytest suite on the oldest and the newest supported pairs of Python
#      and Django, through nox (noxfile.py has the whole matrix);
#   5. pytest in .venv (moto, Azurite and the GCS emulator are started and
#      stopped by fixtures).
# Arguments go to the last pytest. SKIP_MATRIX=1 skips step 4.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/bootstrap.sh | tail -n1)

"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
scripts/django_suite.sh
if [ -z "${SKIP_MATRIX:-}" ]; then
  # nox looks for python3.10 and python3.13 on PATH: use pyenv's directly.
  for bin in "$HOME"/.pyenv/versions/3.1[0-3].*/bin; do PATH="$bin:$PATH"; done
  "$PY" -m nox -s "tests-3.10(django='4.2')" "tests-3.13(django='6.1')"
fi
"$PY" -m pytest "$@"
