#!/usr/bin/env bash
# Run collectstatic on the test project, creating the venv first if needed.
# Extra arguments go to collectstatic, e.g. scripts/collect.sh --clear -v 2
# The storage is picked by the CSP_* variables documented at the top of
# testproject/testproject/settings.py (CSP_STORAGE, CSP_MANIFEST, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=$(scripts/bootstrap.sh | tail -n1)
case "$PY" in
  /*) ;;
  *) PY="$PWD/$PY" ;;
esac

cd testproject
exec "$PY" manage.py collectstatic --noinput "$@"
