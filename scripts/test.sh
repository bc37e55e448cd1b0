#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. create/reuse .venv and install the package with its test extras;
#   2. ruff and mypy;
#   3. Django's own staticfiles tests with collectstatic_plus in front
#      (Django 5.2 and 6.1, see scripts/django_suite.sh);
#   4. pytest (moto's S3 server is started and stopped by a fixture).
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/bootstrap.sh | tail -n1)

"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
scripts/django_suite.sh
"$PY" -m pytest "$@"
